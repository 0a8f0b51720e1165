import ArgumentParser
import Settings

/// `mioctx config ...`: inspect the configuration.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Inspect the worker's configuration.",
        subcommands: [Check.self, Docs.self]
    )
}

extension ConfigCommand {
    /// `mioctx config check`: load the configuration as `mioctx run` does and print it, or its problems.
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the configuration and print the effective values with their sources.",
            discussion: """
                Loads defaults, the YAML file (--config or MIOCTX_CONFIG), secret files (--secrets-directory or \
                MIOCTX_SECRETS_DIRECTORY), environment variables (MIOCTX_..., MIO_CLIENT_ID, MIO_CLIENT_SECRET, \
                MIO_REDIRECT_URL, MIO_API_URL) and the flags, exactly as `mioctx run` does. When valid, prints the \
                effective configuration as YAML with the source of each value (secrets redacted) and exits 0. \
                Otherwise prints every problem on standard error and exits 78 (EX_CONFIG). See \
                docs/configuration.md.


                """ + SettingsReference.flagsHelp
        )

        func run() async throws {
            let effective = try await CommandSettings.load(requiring: .worker)
            print(effective.yamlDescription)
        }
    }

    /// `mioctx config docs`: the reference table of docs/configuration.md, from the declarations.
    struct Docs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the settings reference table (Markdown), as docs/configuration.md holds it."
        )

        func run() async throws {
            print(SettingsReference.markdownTable)
        }
    }
}
