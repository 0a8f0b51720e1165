import Coordination

extension Duration {
    /// The duration in whole milliseconds, clamped to what librdkafka's `int` timeouts accept (0 to `Int32.max`).
    var rdKafkaMilliseconds: Int32 {
        Int32(clamping: max(wholeMilliseconds, 0))
    }
}
