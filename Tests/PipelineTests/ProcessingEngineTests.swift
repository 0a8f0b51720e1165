import Pipeline
import Foundation
import Logging
import MioctxTestSupport
import Testing

@Suite struct ProcessingEngineTests {
    let fastDelivery = RetryPolicy(maxAttempts: 3, maxTimePerJob: .seconds(10), initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(5))

    @Test func everyItemGetsExactlyOneOutcomeWithinTheLimits() async throws {
        let api = ConcurrencyMeter()
        let sink = MemorySink()
        let events = EventLog()
        let configuration = ProcessingEngine.Configuration(
            scheduling: SchedulingConfiguration(maxInFlight: 32, maxInFlightPerUser: 2, readahead: 8)
        )
        let itemCount = 3000
        let invalid = Set(stride(from: 7, to: itemCount, by: 50))
        try await withEngine(api: api, sink: sink, configuration: configuration, events: events) { engine in
            let items = (0 ..< itemCount).map { index in
                invalid.contains(index)
                    ? InputItem(value: Array("not json \(index)".utf8), source: JobSource(partition: PartitionID(topic: "jobs", partition: 0), offset: Int64(index)))
                    : jobItem(index, user: "user\(index % 40)", op: index % 10 == 0 ? "summary" : "context")
            }
            try await engine.submitAll(AsyncStreamOf(items))
            #expect(await engine.waitUntilIdle(timeout: .seconds(120)))
        }
        #expect(sink.results.count == itemCount - invalid.count)
        #expect(Set(sink.results.map(\.jobID)).count == itemCount - invalid.count)
        #expect(sink.results.allSatisfy { $0.status == .ok })
        for result in sink.results {
            let index = Int(result.jobID.dropFirst(4))!
            if index % 10 == 0 {
                #expect(result.payload == .summary(nil))
            } else {
                #expect(result.payload == .context("context for q\(index)"))
            }
            #expect(result.metadata?.description == #"{"n":\#(index)}"#)
        }
        #expect(sink.deadLetters.count == invalid.count)
        #expect(sink.deadLetters.allSatisfy { $0.1.code == .notJSON })
        let done = events.done
        #expect(done.count == itemCount)
        #expect(Set(done.map(\.offset)) == Set((0 ..< itemCount).map(Int64.init)))
        #expect(api.peak <= 32)
        #expect(api.peakPerUser <= 2)
        #expect(api.peak >= 2, "jobs ran concurrently")
        #expect(events.pauses.first == true)
        #expect(events.pauses.last == false, "the input ends resumed")
    }

    @Test func failedPublishIsRetriedAndTheItemIsDoneOnce() async throws {
        let sink = MemorySink(failFirst: 2)
        let events = EventLog()
        try await withEngine(
            api: ConcurrencyMeter(), sink: sink, configuration: .init(delivery: fastDelivery), events: events
        ) { engine in
            engine.submit(jobItem(1, user: "u"))
            #expect(await engine.waitUntilIdle(timeout: .seconds(30)))
        }
        #expect(sink.publishAttempts == 3)
        #expect(sink.results.map(\.jobID) == ["job-1"])
        #expect(events.done.map(\.offset) == [1])
    }

    @Test func persistentPublishFailureIsReportedAndTheItemIsNotDone() async throws {
        let sink = MemorySink(alwaysFailJobID: "job-2")
        let events = EventLog()
        try await withEngine(
            api: ConcurrencyMeter(), sink: sink, configuration: .init(delivery: fastDelivery), events: events
        ) { engine in
            for index in 1 ... 3 { engine.submit(jobItem(index, user: "u")) }
            #expect(await engine.waitUntilIdle(timeout: .seconds(30)))
        }
        #expect(events.deliveryFailed.map(\.offset) == [2])
        #expect(Set(events.done.map(\.offset)) == [1, 3])
        #expect(sink.publishAttempts == 5)
    }

    @Test(arguments: [Logger.Level.info, .debug])
    func warningsAndErrorsAboutAJobCarryItsMetadataWhateverTheLevel(level: Logger.Level) async throws {
        let lines = RecordingLogHandler.Store()
        var logger = Logger.recording("engine", into: lines)
        logger.logLevel = level
        let sink = MemorySink(alwaysFailJobID: "job-2")
        let events = EventLog()
        let engine = ProcessingEngine(
            handler: JobHandler(api: ConcurrencyMeter(), tokens: FixedTokens()),
            sink: sink,
            configuration: .init(delivery: fastDelivery),
            logger: logger
        ) { events.record($0) }
        await withDiscardingTaskGroup { group in
            group.addTask { await engine.run() }
            engine.submit(jobItem(1, user: "u"))
            engine.submit(jobItem(2, user: "u"))
            _ = await engine.drain(timeout: .seconds(30))
        }
        #expect(events.deliveryFailed.map(\.offset) == [2])
        let warnings = lines.all.filter { $0.hasPrefix("warning delivery failed; retrying") }
        let errors = lines.all.filter { $0.hasPrefix("error could not deliver") }
        #expect(warnings.count == 2)
        #expect(errors.count == 1)
        for line in warnings + errors {
            #expect(line.contains("\"job.id\": job-2") && line.contains("\"job.offset\": 2"), "\(line)")
        }
        // The debug line of the job that went well, with its metadata, only when debug is on.
        let done = lines.all.filter { $0.hasPrefix("debug job done") }
        #expect(done.count == (level == .debug ? 1 : 0))
        #expect(done.allSatisfy { $0.contains("\"job.id\": job-1") }, "\(done)")
    }

    @Test func invalidItemGoesToTheDeadLetterSinkUnchangedWithItsReason() async throws {
        let sink = MemorySink()
        let events = EventLog()
        let item = InputItem(
            value: Array(#"{"id":"a","query":"q"}"#.utf8),
            key: Array("k".utf8),
            headers: [MessageHeader(name: "h", value: [1, 2])],
            source: JobSource(partition: PartitionID(topic: "jobs", partition: 2), offset: 9)
        )
        try await withEngine(api: ConcurrencyMeter(), sink: sink, configuration: .init(), events: events) { engine in
            engine.submit(item)
            #expect(await engine.waitUntilIdle(timeout: .seconds(30)))
        }
        let (deadItem, reason) = try #require(sink.deadLetters.first)
        #expect(deadItem.value == item.value)
        #expect(deadItem.key == item.key)
        #expect(deadItem.headers == item.headers)
        #expect(reason.code == .missingField)
        #expect(reason.field == "userId")
        #expect(events.done == [item.source])
        #expect(sink.results.isEmpty)
    }

    @Test func sameKeyResultsArePublishedInSubmissionOrder() async throws {
        let sink = MemorySink()
        let events = EventLog()
        let configuration = ProcessingEngine.Configuration(
            scheduling: SchedulingConfiguration(maxInFlight: 16, maxInFlightPerUser: 4, ordering: .key)
        )
        try await withEngine(api: ConcurrencyMeter(), sink: sink, configuration: configuration, events: events) { engine in
            for index in 0 ..< 400 {
                // Kafka keys for most jobs; none (so the user id orders) for every fifth.
                engine.submit(jobItem(index, user: "user\(index % 7)", key: index % 5 == 0 ? nil : "key\(index % 11)"))
            }
            #expect(await engine.waitUntilIdle(timeout: .seconds(60)))
        }
        #expect(sink.results.count == 400)
        var lastPerKey: [String: Int] = [:]
        for result in sink.results {
            let index = Int(result.jobID.dropFirst(4))!
            let key = index % 5 == 0 ? "user\(index % 7)" : "key\(index % 11)"
            if let previous = lastPerKey[key] { #expect(previous < index, "key \(key)") }
            lastPerKey[key] = index
        }
    }

    @Test func drainWaitsForJobsInFlightThenRejectsNewItems() async throws {
        let api = ConcurrencyMeter(latencyMicroseconds: 20_000 ... 40_000)
        let sink = MemorySink()
        let events = EventLog()
        let engine = ProcessingEngine(handler: JobHandler(api: api, tokens: FixedTokens()), sink: sink) { events.record($0) }
        async let running: Void = engine.run()
        for index in 0 ..< 20 { engine.submit(jobItem(index, user: "u\(index)")) }
        #expect(await engine.drain(timeout: .seconds(60)))
        #expect(engine.submit(jobItem(99, user: "late")) == false)
        await running
        #expect(sink.results.count == 20)
        #expect(events.done.count == 20)
        #expect(engine.pendingCount == 0)
    }

    @Test func drainPastItsDeadlineCancelsJobsInFlight() async throws {
        let api = ConcurrencyMeter(latencyMicroseconds: 3_600_000_000 ... 3_600_000_000)
        let sink = MemorySink()
        let events = EventLog()
        let engine = ProcessingEngine(handler: JobHandler(api: api, tokens: FixedTokens()), sink: sink) { events.record($0) }
        async let running: Void = engine.run()
        for index in 0 ..< 3 { engine.submit(jobItem(index, user: "u")) }
        #expect(await engine.drain(timeout: .milliseconds(200)) == false)
        await running
        #expect(sink.results.isEmpty)
        #expect(events.done.isEmpty)
        #expect(Set(events.cancelled.map(\.offset)) == [0, 1, 2])
    }

    @Test func cancellingRunCancelsJobsInFlightAndStopsTheEngine() async throws {
        let api = ConcurrencyMeter(latencyMicroseconds: 3_600_000_000 ... 3_600_000_000)
        let events = EventLog()
        let engine = ProcessingEngine(handler: JobHandler(api: api, tokens: FixedTokens()), sink: MemorySink()) {
            events.record($0)
        }
        let running = Task { await engine.run() }
        for index in 0 ..< 2 { engine.submit(jobItem(index, user: "u")) }
        while api.current < 2 { await Task.yield() }
        running.cancel()
        await running.value
        #expect(Set(events.cancelled.map(\.offset)) == [0, 1])
        #expect(events.done.isEmpty)
        #expect(engine.submit(jobItem(5, user: "u")) == false)
    }

    @Test func revokedPartitionLosesItsQueuedItemsAndItsRunningOnesFinish() async throws {
        let gate = Gate()
        let api = ConcurrencyMeter(latencyMicroseconds: 1 ... 10, gate: gate)
        let sink = MemorySink()
        let events = EventLog()
        let revoked = PartitionID(topic: "jobs", partition: 0)
        let kept = PartitionID(topic: "jobs", partition: 1)
        let configuration = ProcessingEngine.Configuration(scheduling: SchedulingConfiguration(maxInFlight: 2))
        try await withEngine(api: api, sink: sink, configuration: configuration, events: events) { engine in
            engine.submit(jobItem(0, user: "a", partition: revoked))
            engine.submit(jobItem(1, user: "b", partition: kept))
            engine.submit(jobItem(2, user: "c", partition: revoked))
            engine.submit(jobItem(3, user: "d", partition: kept))
            engine.submit(jobItem(4, user: "e", partition: revoked))
            #expect(engine.pendingCount(in: revoked) == 3)
            let dropped = engine.dropQueued(partition: revoked)
            #expect(dropped.map(\.offset).sorted() == [2, 4])
            #expect(await engine.waitUntilIdle(partition: revoked, timeout: .milliseconds(50)) == false)
            gate.open()
            #expect(await engine.waitUntilIdle(partition: revoked, timeout: .seconds(30)))
            #expect(await engine.waitUntilIdle(timeout: .seconds(30)))
        }
        #expect(Set(events.done.map(\.offset)) == [0, 1, 3])
        #expect(Set(sink.results.map(\.jobID)) == ["job-0", "job-1", "job-3"])
    }

    @Test func inputIsPausedAtTheLimitAndResumedBelowIt() async throws {
        let gate = Gate()
        let api = ConcurrencyMeter(latencyMicroseconds: 1 ... 10, gate: gate)
        let sink = MemorySink()
        let events = EventLog()
        let configuration = ProcessingEngine.Configuration(scheduling: SchedulingConfiguration(maxInFlight: 4))
        try await withEngine(api: api, sink: sink, configuration: configuration, events: events) { engine in
            for index in 0 ..< 3 { engine.submit(jobItem(index, user: "u\(index)")) }
            #expect(events.pauses.isEmpty)
            #expect(!engine.isInputPaused)
            engine.submit(jobItem(3, user: "u3"))
            #expect(events.pauses == [true])
            #expect(engine.isInputPaused)
            engine.submit(jobItem(4, user: "u4"))
            #expect(events.pauses == [true])
            gate.open()
            #expect(await engine.waitUntilIdle(timeout: .seconds(30)))
        }
        #expect(events.pauses.last == false)
        #expect(sink.results.count == 5)
    }
}

/// An async sequence over an array (for `submitAll`).
struct AsyncStreamOf<Element: Sendable>: AsyncSequence, Sendable {
    let elements: [Element]

    init(_ elements: [Element]) {
        self.elements = elements
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: IndexingIterator<[Element]>
        mutating func next() async -> Element? { base.next() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: elements.makeIterator()) }
}
