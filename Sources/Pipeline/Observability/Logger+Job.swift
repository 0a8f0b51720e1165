package import Logging

extension Logger {
    /// This logger with the job's id and source (`job.topic`, `job.partition`, `job.offset`) as metadata.
    package func forJob(_ job: Job) -> Logger {
        self.adding(job.source, jobID: job.id)
    }

    /// This logger with an item's source as metadata (for items that are not valid jobs).
    package func forItem(_ source: JobSource) -> Logger {
        self.adding(source, jobID: nil)
    }

    /// Adds the entries in one assignment: made for every job, where setting them one by one copied and grew
    /// the handler's metadata four times.
    private func adding(_ source: JobSource?, jobID: String?) -> Logger {
        var metadata = self.handler.metadata
        metadata.reserveCapacity(metadata.count + 4)
        if let source {
            metadata["job.topic"] = .string(source.partition.topic)
            metadata["job.partition"] = .string(String(source.partition.partition))
            metadata["job.offset"] = .string(String(source.offset))
        }
        if let jobID {
            metadata["job.id"] = .string(jobID)
        }
        var logger = self
        logger.handler.metadata = metadata
        return logger
    }
}
