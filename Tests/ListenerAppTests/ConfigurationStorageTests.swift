import PostgresStore
import Testing

@testable import ListenerApp

/// `storage.backend` and `storage.postgresql.*`: the keys are a contract (issue 11).
@Suite struct ConfigurationStorageTests {
    @Test func sqliteIsTheDefaultAndNeedsNoURL() async throws {
        let configuration = try await ConfigurationLoading.load(#"{"storage": {"path": "/tmp/x.sqlite"}}"#)
        #expect(configuration.storage.backend == .sqlite)
        #expect(configuration.storage.postgresql == nil)
    }

    @Test func postgresqlTakesAURIOrAConninfoString() async throws {
        let uri = try await ConfigurationLoading.load(
            #"{"storage": {"backend": "postgresql", "postgresql": {"url": "postgresql://listener@db.internal/listener?sslmode=require"}}}"#)
        #expect(uri.storage.backend == .postgresql)
        #expect(uri.storage.postgresql?.url == "postgresql://listener@db.internal/listener?sslmode=require")
        let conninfo = try await ConfigurationLoading.load(
            #"{"storage": {"backend": "postgresql", "postgresql": {"url": "host=/run/postgresql dbname=listener"}}}"#)
        #expect(conninfo.storage.postgresql?.url == "host=/run/postgresql dbname=listener")
        #expect(conninfo.storage.postgresql?.writers == 1)
    }

    @Test func writersAreConfigurableWithinBounds() async throws {
        let configuration = try await ConfigurationLoading.load(
            #"{"storage": {"backend": "postgresql", "postgresql": {"url": "host=db dbname=listener", "writers": 4}}}"#)
        #expect(configuration.storage.postgresql?.writers == 4)
        for writers in [0, ListenerConfiguration.Storage.PostgreSQL.writerLimit + 1] {
            let error = await ConfigurationLoading.errorText(
                #"{"storage": {"backend": "postgresql", "postgresql": {"url": "host=db dbname=listener", "writers": \#(writers)}}}"#)
            #expect(error?.contains("storage.postgresql.writers") == true, "\(error ?? "loaded")")
        }
    }

    @Test func thePasswordComesFromTheCredentialsFileOrTheEnvironmentAndIsNeverPrinted() async throws {
        let json = #"{"storage": {"backend": "postgresql", "postgresql": {"url": "postgresql://listener@db/listener"}}}"#
        let fromFile = try await ConfigurationLoading.load(json, credentials: ["storage-postgresql-password": "file-secret-1\n"])
        #expect(fromFile.storage.postgresql?.password?.value == "file-secret-1")
        #expect(!"\(fromFile.storage.postgresql!)".contains("file-secret-1"))
        let fromEnvironment = try await ConfigurationLoading.load(
            json, environment: ["THINGSPACE_LISTENER_STORAGE_POSTGRESQL_PASSWORD": "env-secret-2"])
        #expect(fromEnvironment.storage.postgreSQLSettings?.password == "env-secret-2")
        #expect(!"\(fromEnvironment.storage.postgreSQLSettings!)".contains("env-secret-2"))
    }

    @Test(arguments: [
        (#"{"storage": {"backend": "postgresql"}}"#, "storage.postgresql.url"),
        (#"{"storage": {"backend": "mysql"}}"#, "storage.backend"),
        (#"{"storage": {"backend": "postgresql", "postgresql": {"url": "/var/lib/x.sqlite"}}}"#, "storage.postgresql.url"),
    ])
    func aWrongStorageSettingNamesItsKey(_ json: String, key: String) async {
        let error = await ConfigurationLoading.errorText(json)
        #expect(error?.contains(key) == true, "\(error ?? "loaded")")
    }
}
