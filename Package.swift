// swift-tools-version: 6.1
import PackageDescription

let upcomingFeatures: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "mioctx",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mioctx", targets: ["mioctx"]),
        .library(name: "Coordination", targets: ["Coordination"]),
        .library(name: "Kafka", targets: ["Kafka"]),
        .library(name: "Mio", targets: ["Mio"]),
        .library(name: "MioSimulator", targets: ["MioSimulator"]),
        .library(name: "MioTokens", targets: ["MioTokens"]),
        .library(name: "HTTPEndpoints", targets: ["HTTPEndpoints"]),
        .library(name: "JSON", targets: ["JSON"]),
        .library(name: "Pipeline", targets: ["Pipeline"]),
        .library(name: "PipelineMioBridge", targets: ["PipelineMioBridge"]),
        .library(name: "KafkaPipeline", targets: ["KafkaPipeline"]),
        .library(name: "FilePipeline", targets: ["FilePipeline"]),
        .library(name: "Settings", targets: ["Settings"]),
    ],
    // The parts that only a production deployment needs, and the heaviest dependencies to build: the demo's build
    // (`make demo`) leaves them out with `--disable-default-traits`; every other build has them (docs/building.md).
    traits: [
        .trait(name: "TLS", description: "HTTPS to Mio (swift-nio-ssl, BoringSSL)"),
        .trait(name: "PostgreSQL", description: "the PostgreSQL token store (postgres-nio)", enabledTraits: ["TLS"]),
        .trait(name: "OTLP", description: "OTLP/HTTP export of traces (swift-otel)"),
        .default(enabledTraits: ["TLS", "PostgreSQL", "OTLP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.25.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.25.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: [.defaults, "YAML"]),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
        // OTLP/HTTP export of the spans (`tracing.*`); only the HTTP trait, so no gRPC stack is built.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // Leaf: the one time source and the one way to wait on state, shared by every module.
        .target(
            name: "Coordination",
            swiftSettings: upcomingFeatures
        ),
        // Leaf: the one JSON string reader and the one escaper/writer (Mio, the pipeline, the log handler).
        .target(
            name: "JSON",
            swiftSettings: upcomingFeatures
        ),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                "Coordination",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .target(
            name: "Mio",
            dependencies: [
                "Coordination",
                "JSON",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["TLS"])),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .target(
            name: "MioSimulator",
            dependencies: [
                "Coordination",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .target(
            name: "MioTokens",
            dependencies: [
                "Coordination",
                "Mio",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio", condition: .when(traits: ["PostgreSQL"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["PostgreSQL"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .target(
            name: "HTTPEndpoints",
            dependencies: [
                "Coordination",
                "JSON",
                "MioTokens",
                "Mio",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // The pipeline core: messages, scheduling, handling, the engine. No Kafka, no HTTP, no SQL, no Mio.
        .target(
            name: "Pipeline",
            dependencies: [
                "Coordination",
                "JSON",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // Mio's and the token store's errors in the pipeline's classification; the client and provider behind its
        // protocols.
        .target(
            name: "PipelineMioBridge",
            dependencies: ["Pipeline", "Mio", "MioTokens"],
            swiftSettings: upcomingFeatures
        ),
        // The pipeline over Kafka: worker, result sink, offset commits.
        .target(
            name: "KafkaPipeline",
            dependencies: [
                "Coordination",
                "Kafka",
                "Pipeline",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // The pipeline over JSON Lines files (`mioctx enrich`); no librdkafka.
        .target(
            name: "FilePipeline",
            dependencies: [
                "Coordination",
                "JSON",
                "Pipeline",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // Every setting declared once: the loader, the flags, `config check` and the docs table come from it.
        // It depends on the libraries whose `Configuration` types own the defaults.
        .target(
            name: "Settings",
            dependencies: [
                "Pipeline",
                "KafkaPipeline",
                "Kafka",
                "Mio",
                "MioTokens",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .executableTarget(
            name: "mioctx",
            dependencies: [
                "Settings",
                "Coordination",
                "Kafka",
                "Mio",
                "MioSimulator",
                "MioTokens",
                "HTTPEndpoints",
                "Pipeline",
                "PipelineMioBridge",
                "KafkaPipeline",
                "FilePipeline",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel", condition: .when(traits: ["OTLP"])),
            ],
            swiftSettings: upcomingFeatures
        ),
        .target(
            name: "MioctxTestSupport",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/MioctxTestSupport",
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "CoordinationTests",
            dependencies: ["Coordination"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "KafkaTests",
            dependencies: ["Kafka", "Coordination", "MioctxTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "MioTests",
            dependencies: [
                "Coordination",
                "Mio",
                "MioSimulator",
                "MioctxTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The TLS fixtures are read from the source tree by path.
            exclude: ["Fixtures"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "MioTokensTests",
            dependencies: [
                "Coordination", "MioTokens", "Mio", "MioSimulator", "HTTPEndpoints", "MioctxTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .target(
            name: "PipelineTestSupport",
            dependencies: [
                "Mio",
                "MioSimulator",
                "MioTokens",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            path: "Tests/PipelineTestSupport",
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "JSONTests",
            dependencies: ["JSON"],
            swiftSettings: upcomingFeatures
        ),
        // The core alone, and with the Mio bridge against the simulator; links no librdkafka.
        .testTarget(
            name: "PipelineTests",
            dependencies: [
                "Coordination",
                "Pipeline",
                "PipelineMioBridge",
                "Mio",
                "MioSimulator",
                "MioTokens",
                "MioctxTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "FilePipelineTests",
            dependencies: [
                "FilePipeline",
                "Pipeline",
                "PipelineMioBridge",
                "PipelineTestSupport",
                "Mio",
                "MioSimulator",
                "MioTokens",
                "MioctxTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "KafkaPipelineTests",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
                "Coordination",
                "KafkaPipeline",
                "Pipeline",
                "PipelineMioBridge",
                "PipelineTestSupport",
                "HTTPEndpoints",
                "Kafka",
                "Mio",
                "MioSimulator",
                "MioTokens",
                "MioctxTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "HTTPEndpointsTests",
            dependencies: [
                "HTTPEndpoints",
                "Pipeline",
                "MioctxTestSupport",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "SettingsTests",
            dependencies: ["Settings", "MioTokens", "MioctxTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "MioctxCommandTests",
            dependencies: [
                "MioctxTestSupport", "Kafka", .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // The executable's wiring (WorkerAssembly), through `@testable import mioctx`.
        .testTarget(
            name: "MioctxAssemblyTests",
            dependencies: ["mioctx", "Settings", "Pipeline"],
            swiftSettings: upcomingFeatures
        ),
    ]
)
