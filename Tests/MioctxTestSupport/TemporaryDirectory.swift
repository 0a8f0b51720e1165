public import Foundation

/// A temporary directory for one test's files, removed when the last reference goes.
public final class TemporaryDirectory {
    /// The directory.
    public let url: URL

    /// Creates an empty directory under the system's temporary directory.
    /// - Throws: When the directory cannot be created.
    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("mioctx-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }

    /// Writes `contents` to `name` in the directory.
    /// - Parameters:
    ///   - name: The file's name.
    ///   - contents: Its text (UTF-8).
    /// - Returns: The file's path.
    /// - Throws: When the file cannot be written.
    public func write(_ name: String, _ contents: String) throws -> String {
        let file = url.appendingPathComponent(name)
        try contents.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }
}
