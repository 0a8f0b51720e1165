import Foundation

/// Formats instants as RFC 3339 UTC timestamps with millisecond precision (`2026-01-31T12:34:56.789Z`).
enum RFC3339 {
    static func format(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let (days, millisecondOfDay) = floorDivide(milliseconds, 86_400_000)
        let (year, month, day) = civil(fromDays: days)
        let hour = millisecondOfDay / 3_600_000
        let minute = millisecondOfDay / 60_000 % 60
        let second = millisecondOfDay / 1000 % 60
        let millisecond = millisecondOfDay % 1000
        // Written straight into the string's storage: one allocation, not an array and then a string.
        return String(unsafeUninitializedCapacity: 24) { bytes in
            var count = 0
            func put(_ byte: UInt8) {
                bytes[count] = byte
                count += 1
            }
            func append(_ value: Int64, digits: Int) {
                var divisor: Int64 = 1
                for _ in 1 ..< digits { divisor *= 10 }
                var rest = value
                while divisor > 0 {
                    put(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
                    rest %= divisor
                    divisor /= 10
                }
            }
            append(year, digits: 4)
            put(UInt8(ascii: "-"))
            append(month, digits: 2)
            put(UInt8(ascii: "-"))
            append(day, digits: 2)
            put(UInt8(ascii: "T"))
            append(hour, digits: 2)
            put(UInt8(ascii: ":"))
            append(minute, digits: 2)
            put(UInt8(ascii: ":"))
            append(second, digits: 2)
            put(UInt8(ascii: "."))
            append(millisecond, digits: 3)
            put(UInt8(ascii: "Z"))
            return count
        }
    }

    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let quotient = value / divisor
        let remainder = value % divisor
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    /// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
    private static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }
}
