import Coordination
public import Foundation
import JSON

/// The outcome of one job: exactly one is published per job, keyed by the user id.
///
/// Wire format (see docs/messages.md and config/schemas/result.schema.json):
/// `{"id","userId","op","status","context"|"summary","error":{"code","message"},"attempts","durationMs",
/// "completedAt","metadata"}`.
public struct JobResult: Sendable, Hashable {
    /// How the job ended.
    public enum Status: String, Sendable, Hashable, CaseIterable {
        /// Mio answered; the result carries `context` or `summary`.
        case ok
        /// The user's refresh token is revoked or expired (or Mio refused a freshly refreshed token): the user
        /// must reconnect.
        case reauthRequired = "reauth_required"
        /// No tokens are stored for the user (unknown user).
        case noTokens = "no_tokens"
        /// Mio kept answering 429 until the attempts or the time per job ran out.
        case rateLimited = "rate_limited"
        /// Mio (or the token refresh) kept failing with 5xx, timeouts or transport errors.
        case upstreamUnavailable = "upstream_unavailable"
        /// Mio refused the request for another reason (a 4xx other than 401 and 429).
        case rejected
        /// Mio answered, but the result would be larger than the result limit (`processing.maxResultBytes`):
        /// the answer is left out and `error.message` gives the size and the limit.
        case tooLarge = "too_large"
    }

    /// What Mio answered, for a job with status ``Status/ok``.
    public enum Payload: Sendable, Hashable {
        /// The `content` of `getContext`, for op `context`.
        case context(String)
        /// The summary of `getContextSummary`, for op `summary`; `nil` when the user has none yet.
        case summary(String?)
    }

    /// Why a job failed. Never contains a token.
    public struct Failure: Sendable, Hashable {
        /// A machine code, e.g. `rate_limited`, `server_error`, `timeout`, `no_tokens`, `client_error`.
        public var code: String
        /// A human-readable explanation.
        public var message: String

        /// Creates a failure description.
        /// - Parameters:
        ///   - code: A machine code.
        ///   - message: A human-readable explanation; must not contain tokens.
        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    /// The job's `id`.
    public var jobID: String
    /// The job's `userId`; also the key of the output message.
    public var userID: String
    /// The job's `op`.
    public var operation: Job.Operation
    /// How the job ended.
    public var status: Status
    /// Mio's answer, when ``status`` is ``Status/ok``.
    public var payload: Payload?
    /// Why the job failed, when ``status`` is not ``Status/ok``.
    public var failure: Failure?
    /// How many times the job was tried (token lookup and Mio call).
    public var attempts: Int
    /// Time from the start of processing to the result (time queued before starting not included).
    public var duration: Duration
    /// When processing finished.
    public var completedAt: Date
    /// The job's `metadata`, echoed byte for byte; omitted when the job had none.
    public var metadata: RawJSON?

    /// Creates a result.
    /// - Parameters:
    ///   - jobID: The job's `id`.
    ///   - userID: The job's `userId`.
    ///   - operation: The job's `op`.
    ///   - status: How the job ended.
    ///   - payload: Mio's answer, for ``Status/ok``.
    ///   - failure: Why the job failed, for every other status.
    ///   - attempts: How many times the job was tried.
    ///   - duration: Processing time.
    ///   - completedAt: When processing finished.
    ///   - metadata: The job's metadata.
    public init(
        jobID: String,
        userID: String,
        operation: Job.Operation,
        status: Status,
        payload: Payload? = nil,
        failure: Failure? = nil,
        attempts: Int,
        duration: Duration,
        completedAt: Date,
        metadata: RawJSON? = nil
    ) {
        self.jobID = jobID
        self.userID = userID
        self.operation = operation
        self.status = status
        self.payload = payload
        self.failure = failure
        self.attempts = attempts
        self.duration = duration
        self.completedAt = completedAt
        self.metadata = metadata
    }

    /// `durationMs`: the duration in whole milliseconds (rounded down).
    public var durationMilliseconds: Int64 { duration.wholeMilliseconds }

    /// The result as UTF-8 JSON, fields in the documented order.
    ///
    /// `context` is written for op `context` and `summary` (a string or null) for op `summary` when the status is
    /// `ok`; `error` only for other statuses; `metadata` only when the job had one.
    public func encoded() -> [UInt8] {
        var writer = JSONWriter(capacity: 160 + (metadata?.bytes.count ?? 0) + payloadSize)
        writer.beginObject()
        writer.key("id")
        writer.string(jobID)
        writer.key("userId")
        writer.string(userID)
        writer.key("op")
        writer.string(operation.rawValue)
        writer.key("status")
        writer.string(status.rawValue)
        switch payload {
        case .context(let content)?:
            writer.key("context")
            writer.string(content)
        case .summary(let summary)?:
            writer.key("summary")
            if let summary { writer.string(summary) } else { writer.raw("null") }
        case nil:
            break
        }
        if let failure {
            writer.key("error")
            writer.beginObject()
            writer.key("code")
            writer.string(failure.code)
            writer.key("message")
            writer.string(failure.message)
            writer.endObject()
        }
        writer.key("attempts")
        writer.integer(Int64(attempts))
        writer.key("durationMs")
        writer.integer(durationMilliseconds)
        writer.key("completedAt")
        writer.string(RFC3339.format(completedAt))
        if let metadata {
            writer.key("metadata")
            writer.raw(metadata.bytes)
        }
        writer.endObject()
        return writer.bytes
    }

    /// A bound on the size of ``encoded()`` that costs no encoding: every string escaped at its worst (6 bytes per
    /// byte, `\u0000`), plus the metadata and the fixed members.
    public var encodedSizeBound: Int {
        let strings = jobID.utf8.count + userID.utf8.count + payloadSize
            + (failure.map { $0.code.utf8.count + $0.message.utf8.count } ?? 0)
        return 256 + 6 * strings + (metadata?.bytes.count ?? 0)
    }

    /// This result when its encoded form fits in `limit` bytes; otherwise a ``Status/tooLarge`` result of the same
    /// job, without Mio's answer (and without the metadata if even that does not fit), whose `error.message` gives
    /// the size and the limit, never the content.
    ///
    /// The exact size is measured (by encoding) only when ``encodedSizeBound`` exceeds the limit.
    /// - Parameter limit: The largest encoded result, in bytes.
    /// - Returns: The result to publish, and the encoded size of `self` when it was over the limit.
    public func fitting(within limit: Int) -> (result: JobResult, oversize: Int?) {
        guard encodedSizeBound > limit else { return (self, nil) }
        let size = encoded().count
        guard size > limit else { return (self, nil) }
        var small = self
        small.status = .tooLarge
        small.payload = nil
        small.failure = Failure(
            code: "too_large",
            message: "the result would be \(size) bytes, over the limit of \(limit) bytes (processing.maxResultBytes); "
                + "Mio's answer is left out"
        )
        if small.encodedSizeBound > limit, small.encoded().count > limit {
            small.metadata = nil
        }
        return (small, size)
    }

    private var payloadSize: Int {
        switch payload {
        case .context(let content)?: content.utf8.count
        case .summary(let summary)?: summary?.utf8.count ?? 0
        case nil: 0
        }
    }
}
