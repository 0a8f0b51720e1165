import Foundation

/// A setting's value that must not be shown: a client secret, the token keys, the OAuth state key, a secret
/// librdkafka property.
///
/// Every way Swift has of turning a value into text shows ``EffectiveSettings/redacted`` instead of the value:
/// string interpolation and `description`, `String(reflecting:)` and `debugDescription`, `dump` and `Mirror`
/// (no children). So a secret printed by mistake, dumped while debugging, or logged as part of a larger value
/// (the whole ``EffectiveSettings``) stays hidden.
///
/// The raw value has one accessor, ``revealedValue``, to be read only where it is handed to what uses it (the
/// Mio client's credentials, the keyring, the state signer, librdkafka). Searching for `revealedValue` finds
/// every such place.
///
/// Swift gives no way to erase a `String` or `Data` from memory: a value is copied freely (copy on write, bridged
/// buffers, the process environment it came from), so a `Secret` does not promise that its bytes are wiped when
/// it goes away; it keeps them out of text. Where the bytes are in a buffer of our own (the decoded token keys),
/// the code that owns it zeroes it.
public struct Secret<Value: Sendable>: Sendable {
    private let value: Value

    /// Wraps a secret value.
    /// - Parameter value: The raw value.
    public init(_ value: Value) {
        self.value = value
    }

    /// The raw value. Read it only to hand it to what needs it, never to show or log it.
    public var revealedValue: Value { value }
}

extension Secret: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// ``EffectiveSettings/redacted``, whatever the value.
    public var description: String { EffectiveSettings.redacted }

    /// ``EffectiveSettings/redacted``, whatever the value.
    public var debugDescription: String { EffectiveSettings.redacted }

    /// A mirror without children, so `dump` and other reflection show only ``EffectiveSettings/redacted``.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

extension Secret: Equatable where Value: Equatable {}

extension Secret: ExpressibleByUnicodeScalarLiteral where Value == String {
    /// A secret written in the code (tests, the demo's generated credentials).
    /// - Parameter value: The literal.
    public init(unicodeScalarLiteral value: String) {
        self.init(value)
    }
}

extension Secret: ExpressibleByExtendedGraphemeClusterLiteral where Value == String {
    /// A secret written in the code (tests, the demo's generated credentials).
    /// - Parameter value: The literal.
    public init(extendedGraphemeClusterLiteral value: String) {
        self.init(value)
    }
}

extension Secret: ExpressibleByStringLiteral where Value == String {
    /// A secret written in the code (tests, the demo's generated credentials).
    /// - Parameter value: The literal.
    public init(stringLiteral value: String) {
        self.init(value)
    }
}

/// A URL that may hold a password, such as `tokens.store`'s `postgres://user:password@host/db`: it shows itself
/// with the password replaced by `***` and everything else as it is (`sqlite:PATH` and URLs without a password
/// are shown whole).
///
/// As with ``Secret``, interpolation, `String(reflecting:)`, `dump` and `Mirror` show only the redacted text;
/// ``revealedValue`` is the one accessor of the URL as written, to be read only where it is handed to the
/// PostgreSQL client.
public struct RedactingURL: Sendable, Equatable {
    private let text: String

    /// Wraps a URL (or `sqlite:PATH`) as written.
    /// - Parameter text: The URL, password included.
    public init(_ text: String) {
        self.text = text
    }

    /// The URL as written, password included. Read it only to hand it to the client that connects.
    public var revealedValue: String { text }

    /// Whether the URL holds a password.
    public var hasPassword: Bool { URLComponents(string: text)?.password != nil }

    /// `text` with the password of its URL replaced by `***`; a URL that cannot be parsed but might hold one
    /// is cut to its scheme.
    /// - Parameter text: A URL, password included.
    /// - Returns: The text without the password.
    public static func redact(_ text: String) -> String {
        guard text.contains("@") else { return text }
        guard var components = URLComponents(string: text) else {
            return (text.range(of: "://").map { String(text[..<$0.upperBound]) } ?? "") + "***"
        }
        if components.password != nil { components.password = "***" }
        return components.string ?? "***"
    }
}

extension RedactingURL: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The URL with its password replaced by `***`.
    public var description: String { Self.redact(text) }

    /// The URL with its password replaced by `***`.
    public var debugDescription: String { Self.redact(text) }

    /// One child, `url`, the URL with its password replaced by `***`.
    public var customMirror: Mirror { Mirror(self, children: ["url": Self.redact(text)], displayStyle: .struct) }
}

extension RedactingURL: ExpressibleByStringLiteral {
    /// A URL written in the code (tests, defaults).
    /// - Parameter value: The literal.
    public init(stringLiteral value: String) {
        self.init(value)
    }
}
