import Configuration
import Foundation
import Yams

/// The YAML configuration file: its values as a swift-configuration provider, plus what that provider cannot
/// express, read from the same text with Yams.
///
/// swift-configuration flattens nested keys with dots, so `kafka.properties` (whose librdkafka names contain dots,
/// `security.protocol`) cannot be told apart from nested keys there; the file's shape is checked here too, so a
/// typo in a key name is reported instead of being silently ignored.
struct SettingsFile: Sendable {
    /// The file's path, as given.
    let path: String
    /// The file's scalar settings; `nil` when the file holds no mapping at all (empty, or only comments).
    let provider: FileProvider<YAMLSnapshot>?
    /// `kafka.properties`, by librdkafka name (nested mappings joined with dots).
    let properties: [String: String]
    /// The key of the librdkafka pass-through map.
    static let propertiesKey = SettingsCatalog().kafka.properties.key
    /// Keys the file mentions without a usable value (`null`, or a list or mapping where one value belongs): the
    /// file does not set them (the problem, if any, is already reported).
    let keysWithoutValue: Set<String>

    /// Reads and checks the file.
    ///
    /// - Parameters:
    ///   - path: The file.
    ///   - pathSource: Where the path came from, for messages.
    /// - Returns: The file, or `nil` when it cannot be used; and every problem found.
    static func load(
        path: String,
        pathSource: SettingSource
    ) async -> (file: SettingsFile?, problems: [SettingsProblem]) {
        func fileProblem(_ message: String) -> (SettingsFile?, [SettingsProblem]) {
            (nil, [SettingsProblem(setting: "config", message: message, source: pathSource)])
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return fileProblem("the configuration file \(path) does not exist")
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path) else {
            return fileProblem("the configuration file \(path) cannot be read")
        }
        let root: Node?
        do {
            root = try Yams.Parser(yaml: data).singleRoot()
        } catch {
            return fileProblem("the configuration file \(path) is not valid YAML: \(describe(error))")
        }
        var walk = Walk(source: .file(path: path))
        switch root {
        case .none:
            return (SettingsFile(path: path, provider: nil, properties: [:], keysWithoutValue: []), [])
        case .some(let node) where node.tag == Tag(.null):
            return (SettingsFile(path: path, provider: nil, properties: [:], keysWithoutValue: []), [])
        case .some(.mapping(let mapping)):
            walk.visit(mapping, path: [])
        case .some:
            return fileProblem("the configuration file \(path) must hold a mapping of settings (kafka:, mio:, ...)")
        }
        let provider: FileProvider<YAMLSnapshot>
        do {
            // The `config:` initializer takes the path as text, sparing a dependency on swift-system's FilePath.
            let location = InMemoryProvider(values: ["filePath": ConfigValue(.string(path), isSecret: false)])
            provider = try await FileProvider<YAMLSnapshot>(config: ConfigReader(provider: location))
        } catch {
            return (nil, walk.problems + fileProblem("the configuration file \(path) cannot be loaded: \(error)").1)
        }
        let file = SettingsFile(
            path: path,
            provider: provider,
            properties: walk.properties,
            keysWithoutValue: walk.keysWithoutValue
        )
        return (file, walk.problems)
    }

    /// A YAML error without the snippet of the file that Yams adds (the line could hold a password).
    private static func describe(_ error: any Error) -> String {
        guard let error = error as? YamlError else { return "\(type(of: error))" }
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            return "\(problem) at line \(mark.line), column \(mark.column)"
        case .reader(let problem, _, _, _):
            return problem
        case .duplicatedKeysInMapping(let duplicates, let context):
            return "duplicated key \(duplicates.sorted().joined(separator: ", ")) at line \(context.mark.line)"
        case .dataCouldNotBeDecoded:
            return "not UTF-8 text"
        default:
            return "\(error)"
        }
    }

    /// A walk over the file's mapping, against the schema.
    private struct Walk {
        let source: SettingSource
        var problems: [SettingsProblem] = []
        var properties: [String: String] = [:]
        var keysWithoutValue: Set<String> = []

        mutating func visit(_ mapping: Node.Mapping, path: [String]) {
            for (keyNode, value) in mapping {
                guard let name = keyNode.scalar?.string else {
                    report(path.joined(separator: "."), "a key must be text, at line \(keyNode.mark?.line ?? 0)")
                    continue
                }
                let keyPath = path + [name]
                let key = keyPath.joined(separator: ".")
                if SettingsCatalog.setting(key) is PropertyMapSetting {
                    visitProperties(value, prefix: [])
                } else if SettingsCatalog.fileKeys.contains(key) {
                    switch value {
                    case .scalar where value.tag == Tag(.null):
                        keysWithoutValue.insert(key)
                    case .scalar:
                        break
                    case .sequence:
                        keysWithoutValue.insert(key)
                        report(key, "must be a single value, not a list")
                    case .mapping:
                        keysWithoutValue.insert(key)
                        report(key, "must be a single value, not a mapping")
                    case .alias:
                        keysWithoutValue.insert(key)
                        report(key, "must be a single value, not an alias")
                    }
                } else if SettingsCatalog.sections.contains(key) {
                    switch value {
                    case .mapping(let nested):
                        visit(nested, path: keyPath)
                    case .scalar where value.tag == Tag(.null):
                        break
                    default:
                        report(key, "must be a mapping of settings")
                    }
                } else {
                    report(key, SettingsCatalog.unknownKeyMessage(key))
                }
            }
        }

        mutating func visitProperties(_ node: Node, prefix: [String]) {
            let key = ([SettingsFile.propertiesKey] + prefix).joined(separator: ".")
            switch node {
            case .mapping(let mapping):
                for (keyNode, value) in mapping {
                    guard let name = keyNode.scalar?.string, !name.isEmpty else {
                        report(key, "a property name must be text, at line \(keyNode.mark?.line ?? 0)")
                        continue
                    }
                    visitProperties(value, prefix: prefix + [name])
                }
            case .scalar(let scalar) where !prefix.isEmpty:
                let name = prefix.joined(separator: ".")
                if node.tag == Tag(.null) {
                    report("\(SettingsFile.propertiesKey).\(name)", "needs a value")
                } else {
                    properties[name] = scalar.string
                }
            case .scalar where node.tag == Tag(.null):
                break
            default:
                report(key, prefix.isEmpty ? "must be a mapping of librdkafka property names to values" : "must be a single value")
            }
        }

        mutating func report(_ key: String, _ message: String) {
            problems.append(SettingsProblem(setting: key, message: message, source: source))
        }
    }
}
