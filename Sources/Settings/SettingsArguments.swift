/// The settings flags of a command line: every flag of ``SettingsCatalog`` (and `--config`,
/// `--secrets-directory`), as `--flag value` or `--flag=value`, wherever it stands.
///
/// The flags are declared once, with their settings, so they are taken off the command line before the
/// command's own options are parsed: every command reads them the same way, in the same words.
public struct SettingsArguments: Sendable, Equatable {
    /// kcat's flag for a librdkafka property, `-X name=value` (or `-Xname=value`), an alias of `--kafka-property`.
    public static let shortPropertyFlag = "-X"

    /// The flags given and their values, in order (a flag may repeat: the last one wins, except for
    /// `--kafka-property` and `-X`, whose entries add up).
    public private(set) var values: [(flag: String, value: String)]

    /// No flags.
    public init() {
        values = []
    }

    /// Splits a command line into the settings flags and the rest.
    ///
    /// A settings flag takes the next argument as its value, even one starting with `-` (`--http-port -1`);
    /// everything after `--` is left alone.
    /// - Parameter arguments: The arguments, without the program's name.
    /// - Returns: The settings flags, and the other arguments in their order.
    public static func split(_ arguments: [String]) -> (settings: SettingsArguments, remaining: [String]) {
        var settings = SettingsArguments()
        var remaining: [String] = []
        let flags = SettingsCatalog.flags
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            if argument == "--" {
                remaining += arguments[(index - 1)...]
                break
            }
            if argument.hasPrefix(shortPropertyFlag), argument.count > shortPropertyFlag.count {
                settings.values.append((shortPropertyFlag, String(argument.dropFirst(shortPropertyFlag.count))))
                continue
            }
            let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let flag = String(parts[0])
            guard flag.hasPrefix("--") || argument == shortPropertyFlag, flags.contains(flag) else {
                remaining.append(argument)
                continue
            }
            if parts.count == 2 {
                settings.values.append((flag, String(parts[1])))
            } else if index < arguments.endIndex {
                settings.values.append((flag, arguments[index]))
                index += 1
            } else {
                // No value: left for the command's parser, which reports the flag as unknown.
                remaining.append(argument)
            }
        }
        return (settings, remaining)
    }

    /// The values of `flags`, in the order given.
    /// - Parameter flags: A setting's flag and its aliases.
    /// - Returns: Each value with the flag that gave it.
    public func values(of flags: [String]) -> [(flag: String, value: String)] {
        values.filter { flags.contains($0.flag) }
    }

    /// Whether both hold the same flags and values in the same order.
    /// - Parameters:
    ///   - left: Flags.
    ///   - right: Flags.
    /// - Returns: Whether they are equal.
    public static func == (left: SettingsArguments, right: SettingsArguments) -> Bool {
        left.values.elementsEqual(right.values) { $0.flag == $1.flag && $0.value == $1.value }
    }
}
