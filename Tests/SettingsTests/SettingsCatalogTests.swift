import Foundation
import Settings
import Testing

/// The declarations themselves, and what is derived from them: the reference table, the flags.
@Suite struct SettingsCatalogTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func referenceTableInTheDocsIsTheOneTheDeclarationsGenerate() throws {
        let docs = try String(
            contentsOf: Self.repository.appendingPathComponent("docs/configuration.md"), encoding: .utf8
        )
        let begin = try #require(docs.range(of: SettingsReference.tableBegin + "\n"))
        let end = try #require(docs.range(of: "\n" + SettingsReference.tableEnd, range: begin.upperBound..<docs.endIndex))
        let table = String(docs[begin.upperBound..<end.lowerBound])
        #expect(
            table == SettingsReference.markdownTable,
            "docs/configuration.md is out of date: replace its table with the output of `mioctx config docs`"
        )
    }

    @Test func everyKeyAndFlagIsDeclaredOnce() {
        let keys = SettingsCatalog.all.map(\.key)
        #expect(Set(keys).count == keys.count)
        let flags = SettingsCatalog.all.flatMap(\.flags)
        #expect(Set(flags).count == flags.count)
        #expect(SettingsCatalog.flags.isSuperset(of: ["--config", "--secrets-directory", "--token-store", "--store"]))
    }

    @Test func everyDefaultReadsBackAsItIsShown() {
        for setting in SettingsCatalog.all where setting.layers == .all {
            let shown = setting.formatAny(setting.anyDefault)
            guard shown != "~", shown != "{}" else { continue }
            let parsed = setting.parseAny(shown)
            guard case .success(let value) = parsed else {
                Issue.record("\(setting.key): its default \(shown) does not parse: \(parsed)")
                continue
            }
            #expect(setting.formatAny(value) == shown, "\(setting.key)")
        }
    }

    @Test func defaultsComeFromTheLibraries() {
        let defaults = EffectiveSettings.defaults
        #expect(defaults[\.mio.maxConnections] == 256)
        #expect(defaults[\.processing.maxInFlight] == 256)
        #expect(defaults[\.processing.maxInFlightPerUser] == 4)
        #expect(defaults[\.processing.retry.maxTimePerJob] == .seconds(60))
        #expect(defaults[\.processing.commitInterval] == .seconds(1))
        #expect(defaults[\.tokens.store] == "sqlite:mioctx-tokens.sqlite")
        #expect(defaults[\.tokens.proactiveRefreshThreshold] == 0.2)
    }

    @Test func environmentVariablesFollowTheKeyEncodingThenTheOtherNames() {
        let table = SettingsReference.markdownTable
        #expect(table.contains("| `processing.retry.maxTimePerJob` | `MIOCTX_PROCESSING_RETRY_MAX_TIME_PER_JOB` |"))
        #expect(table.contains("| `mio.apiURL` | `MIOCTX_MIO_API_URL`, then `MIO_API_URL` | `--mio-api-url` |"))
        #expect(table.contains("| `mio.clientSecret` | `MIO_CLIENT_SECRET` only |"))
        #expect(table.contains("| `tokens.store` | `MIOCTX_TOKENS_STORE` | `--token-store` (or `--store`) |"))
    }

    @Test func settingsFlagsAreTakenWhereverTheyStandAndTheRestIsLeft() {
        let split = SettingsArguments.split([
            "get", "--max-in-flight", "8", "u1", "--reveal", "--http-port=-1", "--store", "sqlite:x", "--user", "u",
            "--", "--max-in-flight", "9",
        ])
        #expect(split.remaining == ["get", "u1", "--reveal", "--user", "u", "--", "--max-in-flight", "9"])
        #expect(split.settings.values.map(\.flag) == ["--max-in-flight", "--http-port", "--store"])
        #expect(split.settings.values.map(\.value) == ["8", "-1", "sqlite:x"])
    }
}
