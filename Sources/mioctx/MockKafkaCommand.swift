import ArgumentParser

struct MockKafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mock-kafka")
    func run() async throws {}
}
