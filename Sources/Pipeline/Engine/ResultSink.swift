/// Where the engine delivers outcomes: the output and dead-letter topics, or files.
///
/// Both methods return only when the outcome is durably accepted (for Kafka: the delivery report arrived), and
/// throw otherwise; the engine retries a throwing call with backoff and, if it keeps failing, does not report
/// the item as done.
public protocol ResultSink: Sendable {
    /// Publishes a job's result (for Kafka: keyed by `result.userID`, job id in a header, the item's
    /// `traceparent` header carried over).
    /// - Parameters:
    ///   - result: The result; ``JobResult/encoded()`` is its wire form.
    ///   - item: The input item the job came from.
    /// - Throws: If the result was not accepted.
    func publish(_ result: JobResult, for item: InputItem) async throws

    /// Sends an input item that is not a valid job to the dead-letter destination, with its original key, value
    /// and headers, and the reason.
    /// - Parameters:
    ///   - item: The input item, unchanged.
    ///   - reason: Why it is not a valid job.
    /// - Throws: If the copy was not accepted.
    func deadLetter(_ item: InputItem, reason: InvalidJob) async throws
}
