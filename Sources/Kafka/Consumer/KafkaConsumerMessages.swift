/// The `AsyncSequence` of a consumer's messages.
public struct KafkaConsumerMessages: AsyncSequence, Sendable {
    /// A message read from Kafka.
    public typealias Element = KafkaMessage

    let buffer: KafkaMessageBuffer
    /// Wakes the consumer's poll loop, so that fetching resumes at once after a read drained a full buffer.
    let wakePollLoop: @Sendable () -> Void

    /// Iterates over the consumer's messages; ends when the consumer closes.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let buffer: KafkaMessageBuffer
        let wakePollLoop: @Sendable () -> Void

        /// The next message, waiting for one.
        ///
        /// - Returns: the message, or `nil` once the consumer closed and every buffered message was read (or the
        ///   reading task was cancelled).
        public mutating func next() async -> KafkaMessage? {
            let read = await buffer.next()
            if read.resumeFetching {
                wakePollLoop()
            }
            return read.message
        }
    }

    /// Makes an iterator; read the messages from one task.
    ///
    /// - Returns: an iterator over the consumer's messages.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(buffer: buffer, wakePollLoop: wakePollLoop)
    }
}
