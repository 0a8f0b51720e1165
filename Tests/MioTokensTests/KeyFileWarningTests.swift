import Foundation
import MioTokens
import Testing

/// A key file its group or other users can read gets a warning at start; one of the owner's alone does not.
@Suite struct KeyFileWarningTests {
    @Test func aKeyFileReadableByGroupOrOthersIsWarnedAboutAtStart() async throws {
        try await withTemporaryDirectory { directory in
            let keys = directory.appendingPathComponent("keys").path
            #expect(try await runMioctx(["tokens", "keygen", "--file", keys], directory: directory).status == 0)
            let arguments = ["tokens", "list", "--key-file", keys, "--store", "sqlite:t.sqlite"]

            let owned = try await runMioctx(arguments, directory: directory)
            #expect(owned.status == 0, "\(owned.error)")
            #expect(!owned.error.contains("warning"), "\(owned.error)")

            #expect(chmod(keys, 0o644) == 0)
            let shared = try await runMioctx(arguments, directory: directory)
            #expect(shared.status == 0, "\(shared.error)")
            #expect(shared.error.contains("warning: the key file \(keys) can be read by its group or other users"))
            #expect(shared.error.contains("chmod 600"))
        }
    }
}
