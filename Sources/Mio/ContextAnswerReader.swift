import NIOCore

/// Reads the `content` string of a `POST /v1/context` answer (`{"content": "..."}`) without `JSONDecoder`, which
/// costs a few allocations and microseconds per answer on the hot path.
///
/// It reads the common shape only: an object whose members are strings, numbers, booleans or null. It returns nil
/// for anything else (nested values, a repeated `content`, invalid UTF-8, a lone surrogate, a missing
/// `content`), and the caller then decodes with `JSONDecoder`, whose answer is the one that counts. So the fast
/// path never accepts what `JSONDecoder` would refuse, and never refuses on its own.
enum ContextAnswerReader {
    static func content(of body: ByteBuffer) -> String? {
        body.withUnsafeReadableBytes { bytes in
            var reader = Reader(bytes: bytes)
            return reader.readContent()
        }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        init(bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        mutating func readContent() -> String? {
            self.skipWhitespace()
            guard self.take(UInt8(ascii: "{")) else { return nil }
            var content: String?
            self.skipWhitespace()
            if !self.take(UInt8(ascii: "}")) {
                while true {
                    self.skipWhitespace()
                    guard let key = self.readString() else { return nil }
                    self.skipWhitespace()
                    guard self.take(UInt8(ascii: ":")) else { return nil }
                    self.skipWhitespace()
                    if key == "content" {
                        guard content == nil, let value = self.readString() else { return nil }
                        content = value
                    } else {
                        guard self.skipScalar() else { return nil }
                    }
                    self.skipWhitespace()
                    if self.take(UInt8(ascii: ",")) { continue }
                    guard self.take(UInt8(ascii: "}")) else { return nil }
                    break
                }
            }
            self.skipWhitespace()
            return self.index == self.bytes.count ? content : nil
        }

        private mutating func take(_ byte: UInt8) -> Bool {
            guard self.index < self.bytes.count, self.bytes[self.index] == byte else { return false }
            self.index += 1
            return true
        }

        private mutating func skipWhitespace() {
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): self.index += 1
                default: return
                }
            }
        }

        /// A string, a number, `true`, `false` or `null`; anything else (an object or array) is left to
        /// `JSONDecoder`.
        private mutating func skipScalar() -> Bool {
            guard self.index < self.bytes.count else { return false }
            if self.bytes[self.index] == UInt8(ascii: "\"") { return self.readString() != nil }
            let start = self.index
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                    UInt8(ascii: "e"), UInt8(ascii: "E"), UInt8(ascii: "a")...UInt8(ascii: "z"):
                    self.index += 1
                default:
                    return self.isScalar(start..<self.index)
                }
            }
            return false
        }

        private func isScalar(_ range: Range<Int>) -> Bool {
            let token = self.bytes[range]
            if token.elementsEqual("true".utf8) || token.elementsEqual("false".utf8) || token.elementsEqual("null".utf8) {
                return true
            }
            // A number: -?digits(.digits)?([eE][+-]?digits)?
            var position = range.lowerBound
            func digits() -> Bool {
                let first = position
                while position < range.upperBound, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[position]) {
                    position += 1
                }
                return position > first
            }
            if position < range.upperBound, self.bytes[position] == UInt8(ascii: "-") { position += 1 }
            let integerStart = position
            guard digits() else { return false }
            // No leading zero: JSON refuses `01`.
            if self.bytes[integerStart] == UInt8(ascii: "0") && position - integerStart > 1 { return false }
            if position < range.upperBound, self.bytes[position] == UInt8(ascii: ".") {
                position += 1
                guard digits() else { return false }
            }
            if position < range.upperBound, self.bytes[position] | 0x20 == UInt8(ascii: "e") {
                position += 1
                if position < range.upperBound, self.bytes[position] == UInt8(ascii: "+") || self.bytes[position] == UInt8(ascii: "-") {
                    position += 1
                }
                guard digits() else { return false }
            }
            return position == range.upperBound
        }

        /// A JSON string at the current position, unescaped; nil if it is not one or its text is not valid.
        private mutating func readString() -> String? {
            guard self.take(UInt8(ascii: "\"")) else { return nil }
            let start = self.index
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                if byte == UInt8(ascii: "\"") {
                    let text = String(validating: self.bytes[start..<self.index], as: UTF8.self)
                    self.index += 1
                    return text
                }
                if byte == UInt8(ascii: "\\") { return self.readEscapedString(from: start) }
                if byte < 0x20 { return nil }
                self.index += 1
            }
            return nil
        }

        private mutating func readEscapedString(from start: Int) -> String? {
            var unescaped: [UInt8] = []
            unescaped.reserveCapacity(self.bytes.count - start)
            unescaped.append(contentsOf: self.bytes[start..<self.index])
            while self.index < self.bytes.count {
                // Copy the run up to the next quote, backslash or control character in one go.
                var end = self.index
                while end < self.bytes.count {
                    let byte = self.bytes[end]
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                    end += 1
                }
                if end > self.index {
                    unescaped.append(contentsOf: self.bytes[self.index..<end])
                    self.index = end
                    continue
                }
                let byte = self.bytes[self.index]
                self.index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(validating: unescaped, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard self.index < self.bytes.count else { return nil }
                    let escape = self.bytes[self.index]
                    self.index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): unescaped.append(escape)
                    case UInt8(ascii: "b"): unescaped.append(0x08)
                    case UInt8(ascii: "f"): unescaped.append(0x0C)
                    case UInt8(ascii: "n"): unescaped.append(0x0A)
                    case UInt8(ascii: "r"): unescaped.append(0x0D)
                    case UInt8(ascii: "t"): unescaped.append(0x09)
                    case UInt8(ascii: "u"):
                        guard var scalar = self.readHex4() else { return nil }
                        if (0xD800..<0xDC00).contains(scalar) {
                            guard self.take(UInt8(ascii: "\\")), self.take(UInt8(ascii: "u")), let low = self.readHex4(),
                                (0xDC00..<0xE000).contains(low)
                            else { return nil }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let character = Unicode.Scalar(scalar) else { return nil }
                        unescaped.append(contentsOf: UTF8.encode(character)!)
                    default:
                        return nil
                    }
                default:
                    if byte < 0x20 { return nil }
                    unescaped.append(byte)
                }
            }
            return nil
        }

        private mutating func readHex4() -> UInt32? {
            guard self.index + 4 <= self.bytes.count else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = self.bytes[self.index]
                self.index += 1
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: return nil
                }
                value = value << 4 | UInt32(digit)
            }
            return value
        }
    }
}
