import ArgumentParser

/// `mioctx config ...`: inspect the configuration.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Inspect the worker's configuration.",
        subcommands: [Check.self]
    )
}

extension ConfigCommand {
    /// `mioctx config check`: load the configuration as `mioctx run` does and print it, or its problems.
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the configuration and print the effective values with their sources.",
            discussion: """
                Loads defaults, the YAML file (--config or MIOCTX_CONFIG), environment variables (MIOCTX_..., \
                MIO_CLIENT_ID, MIO_CLIENT_SECRET, MIO_REDIRECT_URL, MIO_API_URL) and the flags, exactly as \
                `mioctx run` does. When valid, prints the effective configuration as YAML with the source of each \
                value (secrets redacted) and exits 0. Otherwise prints every problem on standard error and exits \
                78 (EX_CONFIG). See docs/configuration.md.
                """
        )

        @OptionGroup var settings: SettingsOptions

        func run() async throws {
            let effective = try await settings.loadOrExit()
            print(effective.yamlDescription)
        }
    }
}
