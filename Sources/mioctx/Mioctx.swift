import ArgumentParser
import Settings

/// The `mioctx` command line: one executable, one subcommand per job.
@main
struct Mioctx: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mioctx",
        abstract: "Kafka-to-Mio context processor.",
        version: MioctxVersion.description,
        subcommands: [
            RunCommand.self,
            DemoCommand.self,
            EnrichCommand.self,
            ConfigCommand.self,
            TopicsCommand.self,
            HealthcheckCommand.self,
            MockKafkaCommand.self,
            SimCommand.self,
            TokensCommand.self,
        ]
    )

    /// Takes the settings flags off the command line (they are declared with their settings, so every command
    /// reads them alike), then parses and runs the command with the settings flags in ``CommandSettings``.
    static func main() async {
        let split = SettingsArguments.split(Array(CommandLine.arguments.dropFirst()))
        await CommandSettings.$arguments.withValue(split.settings) {
            do {
                var command = try parseAsRoot(split.remaining)
                if var asyncCommand = command as? any AsyncParsableCommand {
                    try await asyncCommand.run()
                } else {
                    try command.run()
                }
            } catch {
                exit(withError: error)
            }
        }
    }
}
