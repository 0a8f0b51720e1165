import ArgumentParser

/// The `mioctx` command line: one executable, one subcommand per job.
@main
struct Mioctx: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mioctx",
        abstract: "Kafka-to-Mio context processor.",
        subcommands: [
            RunCommand.self,
            DemoCommand.self,
            EnrichCommand.self,
            ConfigCommand.self,
            MockKafkaCommand.self,
            SimCommand.self,
            TokensCommand.self,
        ]
    )
}
