import ArgumentParser
import Coordination
import Foundation
import HTTPEndpoints
import Logging
import Mio
import MioTokens
import Settings

/// `mioctx tokens ...`: manage the token store.
struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Manage users' OAuth tokens: keys, import, connect, inspect, revoke, rotate, refresh.",
        discussion: """
            Every subcommand reads the settings as `mioctx run` does: --config or MIOCTX_CONFIG, the environment, \
            the flags. The store is tokens.store: --token-store (or its older name --store), MIOCTX_TOKENS_STORE \
            or the file's tokens.store; sqlite:PATH (default sqlite:mioctx-tokens.sqlite) or \
            postgres://user:password@host:port/db. Tokens are encrypted at rest with the keys of MIOCTX_TOKEN_KEYS \
            (kid:base64key,... first is primary) or of the key file (tokens.keyFile: --key-file, \
            MIOCTX_TOKENS_KEY_FILE or MIOCTX_TOKEN_KEY_FILE). Mio credentials come from MIO_CLIENT_ID, \
            MIO_CLIENT_SECRET, MIO_REDIRECT_URL, and its address from mio.apiURL (MIO_API_URL).


            """ + SettingsReference.flagsHelp,
        subcommands: [
            Keygen.self, Import.self, ConnectLinkCommand.self, Connect.self, Get.self, List.self, Revoke.self, Rekey.self, Refresh.self,
        ]
    )
}

/// Writes a line to standard error.
private func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

private func iso8601(_ date: Date) -> String {
    date.formatted(.iso8601)
}

extension TokensCommand {
    struct Keygen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new AES-256 key (kid:base64key).",
            discussion: """
                Without --file the entry is printed: put it first in MIOCTX_TOKEN_KEYS. With --file it is \
                written first in the key file (created with mode 0600), keeping the older keys for decryption \
                until `mioctx tokens rekey` has run.
                """
        )

        @Option(help: "The key id (default: k followed by 8 random hex digits).")
        var keyID: String?

        @Option(help: "Prepend the new key to this key file instead of printing it.")
        var file: String?

        func run() async throws {
            if let keyID, !TokenKeyring.isValidKeyID(keyID) {
                throw ValidationError("a key id is 1-64 characters of A-Z a-z 0-9 _ - .")
            }
            let entry = TokenKeyring.generateEntry(keyID: keyID)
            guard let file else {
                print(entry)
                return
            }
            let existing = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            let contents = existing.isEmpty ? entry + "\n" : entry + "\n" + existing
            _ = try TokenKeyring(parsing: contents)
            let url = URL(fileURLWithPath: file).absoluteURL
            let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
            guard FileManager.default.createFile(
                atPath: temporary.path, contents: Data(contents.utf8), attributes: [.posixPermissions: 0o600]
            ) else {
                throw ValidationError("cannot write \(temporary.path)")
            }
            // rename(2) replaces the file atomically (Foundation's replaceItemAt can lose the original on Linux).
            guard rename(temporary.path, url.path) == 0 else {
                try? FileManager.default.removeItem(at: temporary)
                throw ValidationError("cannot replace \(file) (errno \(errno))")
            }
            let keyID = String(entry.prefix(while: { $0 != ":" }))
            print("wrote key \(keyID) as the primary key of \(file)")
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import tokens from a JSON Lines file.",
            discussion: """
                One object per line: {"userId", "accessToken", "refreshToken", "idToken"?, "expiresIn" (seconds) \
                or "expiresAt" (ISO 8601 or seconds since 1970)}. Bad lines are reported with their line number \
                (never their content) and skipped; good lines are imported. Exits 1 when a line was bad.
                """
        )

        @Option(help: "The JSON Lines file.")
        var file: String

        func run() async throws {
            let contents: String
            do {
                contents = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw ValidationError("cannot read \(file): \(error.localizedDescription)")
            }
            let now = TimeSource.system.wallNow()
            var grants: [(line: Int, userID: String, grant: TokenGrant)] = []
            var bad = 0
            for (index, line) in contents.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if text.isEmpty { continue }
                switch TokenImportLine.parse(text, now: now) {
                case .success(let parsed): grants.append((index + 1, parsed.userID, parsed.grant))
                case .failure(let reason):
                    bad += 1
                    printError("line \(index + 1): \(reason.message)")
                }
            }
            let toImport = grants
            let imported = try await TokenStoreAccess.withStore { store, _ in
                var imported = 0
                for entry in toImport {
                    do {
                        try await store.upsert(userID: entry.userID, tokens: entry.grant)
                        imported += 1
                    } catch {
                        printError("line \(entry.line): not stored: \(error)")
                    }
                }
                return imported
            }
            bad += toImport.count - imported
            print("imported \(imported) user(s), rejected \(bad) line(s)")
            if bad > 0 { throw ExitCode(1) }
        }
    }

    struct Connect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Exchange an authorization code for a user's tokens and store them."
        )

        @Option(help: "The user id.")
        var user: String

        @Option(help: .hidden)
        var code: String?

        @Option(help: ArgumentHelp(
            "A file holding the authorization code from Mio's consent flow (- reads standard input; default: the "
                + "MIOCTX_AUTHORIZATION_CODE environment variable)."
        ))
        var codeFile: String?

        /// The environment variable that takes the authorization code.
        static let codeVariable = "MIOCTX_AUTHORIZATION_CODE"

        func validate() throws {
            if code != nil {
                throw ValidationError(
                    "--code is not accepted: an authorization code on the command line is visible in /proc/*/cmdline "
                        + "and shell history; pass it in \(Self.codeVariable) or in a file with --code-file PATH "
                        + "(--code-file - reads standard input)"
                )
            }
        }

        func run() async throws {
            let user = user
            let code = try readCode()
            let record = try await TokenStoreAccess.withStoreAndMio { store, mio, _ in
                let response = try await mio.exchangeCodeForTokens(code: code)
                let grant = try TokenGrant(codeExchange: response, userID: user, receivedAt: TimeSource.system.wallNow())
                return try await store.upsert(userID: user, tokens: grant)
            }
            print("connected \(user): access token expires at \(iso8601(record.expiresAt))")
        }
    }

    /// `mioctx tokens connect-link --user ID`: a signed link to `/oauth/connect`.
    struct ConnectLinkCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "connect-link",
            abstract: "Print a signed connect link for a user (what the application's backend makes).",
            discussion: """
                The link goes to /oauth/connect on the OAuth listener (the origin of MIO_REDIRECT_URL) and is signed \
                with MIOCTX_OAUTH_STATE_KEY; it names the user id and an expiry. Hand it only to the user it names, \
                after your own login: whoever opens it connects their Mio account to that user id.
                """
        )

        @Option(help: "The user id the tokens will be stored under.")
        var user: String

        @Option(help: "How long the link is accepted, in seconds.")
        var lifetime: Int = 900

        @Flag(help: "Allow the link to replace a connection to a different Mio account.")
        var replace = false

        func validate() throws {
            guard !user.isEmpty else { throw ValidationError("--user must not be empty") }
            guard (1...604_800).contains(lifetime) else {
                throw ValidationError("--lifetime must be 1 to 604800 seconds (7 days)")
            }
        }

        func run() async throws {
            let settings = try await CommandSettings.load(requiring: [])
            guard let key = settings[\.oauth.stateKey] else {
                throw ValidationError("the link is signed with the OAuth state key: set MIOCTX_OAUTH_STATE_KEY")
            }
            let redirectURL = settings[\.mio.redirectURL]
            guard !redirectURL.isEmpty else {
                throw ValidationError("the link goes to the origin of the redirect URL: set MIO_REDIRECT_URL")
            }
            let connectURL = OAuthEndpoints.Configuration(clientID: "", redirectURL: redirectURL, dashboardURL: "")
                .connectURL
            print(makeConnectLink(
                connectURL: connectURL, userID: user, stateKey: key.revealedValue, lifetime: .seconds(lifetime), replace: replace
            ))
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a user's token status and expiry (the tokens only with --reveal)."
        )

        @Argument(help: "The user id.")
        var user: String

        @Flag(help: "Also print the tokens (they are secrets: mind your terminal and shell history).")
        var reveal = false

        func run() async throws {
            guard let record = try await TokenStoreAccess.withStore({ store, _ in try await store.get(userID: user) }) else {
                printError("no tokens stored for \(user)")
                throw ExitCode(1)
            }
            print("user:       \(record.userID)")
            print("status:     \(record.status.rawValue)")
            print("expires at: \(iso8601(record.expiresAt))")
            print("issued at:  \(iso8601(record.issuedAt))")
            print("version:    \(record.version)")
            print("updated at: \(iso8601(record.updatedAt))")
            print("access token sha256: \(TokenRecord.fingerprint(of: record.accessToken))")
            if reveal {
                print("access token:  \(record.accessToken)")
                print("refresh token: \(record.refreshToken)")
                if let idToken = record.idToken { print("id token:      \(idToken)") }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users with their token status and expiry.")

        @Option(help: "Start after this user id.")
        var after: String?

        @Option(help: "At most this many users (default: all).")
        var limit: Int?

        func run() async throws {
            let start = after
            let limit = limit
            let records = try await TokenStoreAccess.withStore { store, _ in
                var records: [TokenRecord] = []
                var cursor = start
                repeat {
                    let pageSize = min(500, limit.map { $0 - records.count } ?? 500)
                    if pageSize <= 0 { break }
                    let page = try await store.list(after: cursor, limit: pageSize)
                    records += page.records
                    cursor = page.nextCursor
                } while cursor != nil
                return records
            }
            print("USER\tSTATUS\tEXPIRES_AT\tVERSION\tUPDATED_AT")
            for record in records {
                print(
                    "\(record.userID)\t\(record.status.rawValue)\t\(iso8601(record.expiresAt))\t\(record.version)\t"
                        + iso8601(record.updatedAt)
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a user's tokens: they are wiped and the user must reconnect."
        )

        @Argument(help: "The user id.")
        var user: String

        func run() async throws {
            guard try await TokenStoreAccess.withStore({ store, _ in try await store.setStatus(.revoked, userID: user) }) else {
                printError("no tokens stored for \(user)")
                throw ExitCode(1)
            }
            print("revoked \(user)")
        }
    }

    struct Rekey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-encrypt every row with the primary key, so that older keys can be removed."
        )

        func run() async throws {
            let report = try await TokenStoreAccess.withStore { store, _ in try await store.rekeyReporting() }
            print("re-encrypted \(report.rewritten) row(s) with the primary key")
            guard report.undecryptable.isEmpty else {
                printError(
                    "could not decrypt \(report.undecryptable.count) row(s), left as they are (no key of the keyring "
                        + "opens them, or they were altered): \(report.undecryptable.joined(separator: ", ")); "
                        + "`mioctx tokens revoke USER` each, and have those users reconnect"
                )
                throw ExitCode(2)
            }
        }
    }

    struct Refresh: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Refresh a user's tokens now, with the same coordination as the pipeline.",
            discussion: """
                Prints one JSON object: the SHA-256 fingerprints of the resulting access tokens with how many \
                callers got each (never the tokens), and the provider's counters. With \
                --after-unauthorized-fingerprint the refresh is the one the pipeline does after a 401 for the \
                token with that fingerprint: if the stored token is another one, it is used and Mio is not called. \
                --concurrency runs that many concurrent callers in this process (they share one refresh).
                """
        )

        @Argument(help: "The user id.")
        var user: String

        @Option(help: "The SHA-256 fingerprint of the access token Mio rejected (default: the stored token).")
        var afterUnauthorizedFingerprint: String?

        @Option(help: "Concurrent callers in this process.")
        var concurrency: Int = 1

        @Flag(help: "Print \"ready\" once the store is read, and wait for a line on standard input before refreshing.")
        var waitForStdin = false

        func run() async throws {
            let user = user
            let fingerprint = afterUnauthorizedFingerprint
            let concurrency = max(1, concurrency)
            let waitForStdin = waitForStdin
            let report = try await TokenStoreAccess.withStoreAndMio { store, mio, settings in
                guard let record = try await store.get(userID: user) else {
                    throw TokenError(.noTokens, userID: user, detail: "no tokens stored for this user")
                }
                // The rejected token is known only by its fingerprint: when the stored token no longer has it,
                // a value no token can equal stands for it, and the provider sees that the token was replaced.
                let rejected =
                    fingerprint == nil || TokenRecord.fingerprint(of: record.accessToken) == fingerprint
                    ? record.accessToken : "\u{0}rejected:\(fingerprint!)"
                if waitForStdin {
                    FileHandle.standardOutput.write(Data("ready\n".utf8))
                    _ = readLine()
                }
                var logger = Logger(label: "mioctx.tokens")
                logger.logLevel = .error
                let provider = WorkerAssembly.tokenProvider(
                    settings: settings, store: store, refresher: mio, logger: logger
                )
                let results = await withTaskGroup(of: Result<String, TokenError>.self) { group in
                    for _ in 0..<concurrency {
                        group.addTask {
                            do {
                                let token = try await provider.refreshAfterUnauthorized(
                                    userID: user, rejected: rejected
                                )
                                return .success(TokenRecord.fingerprint(of: token))
                            } catch let error as TokenError {
                                return .failure(error)
                            } catch {
                                return .failure(TokenError(.refreshFailed, userID: user, detail: "\(error)"))
                            }
                        }
                    }
                    var results: [Result<String, TokenError>] = []
                    for await result in group { results.append(result) }
                    return results
                }
                return RefreshReport(userID: user, results: results, statistics: provider.statistics)
            }
            print(report.json)
            if report.failures > 0 { throw ExitCode(1) }
        }
    }
}

extension TokensCommand.Connect {
    /// The code from --code-file (or standard input), else from the environment.
    func readCode() throws -> String {
        let text: String
        if let codeFile {
            if codeFile == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                guard let contents = FileManager.default.contents(atPath: codeFile) else {
                    throw ValidationError("cannot read \(codeFile)")
                }
                text = String(decoding: contents, as: UTF8.self)
            }
        } else {
            text = ProcessInfo.processInfo.environment[Self.codeVariable] ?? ""
        }
        let code = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !code.isEmpty else {
            throw ValidationError("no authorization code: set \(Self.codeVariable) or pass --code-file PATH")
        }
        return code
    }
}
