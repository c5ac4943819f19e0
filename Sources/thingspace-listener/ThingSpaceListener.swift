import ArgumentParser
import Foundation

struct ThingSpaceListener: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thingspace-listener",
        abstract: "Receive, store and acknowledge Verizon ThingSpace callbacks.",
        discussion: """
            Run `serve` as the service. The other commands inspect what was received, \
            manage ThingSpace callback registrations by hand, and help testing. \
            Exit status 2 means a usage error.
            """,
        subcommands: [
            Serve.self, Messages.self, Deliveries.self, Store.self, Callbacks.self, SendTest.self, ReceiveTest.self, Sandbox.self,
        ]
    )
}

@main
enum Entry {
    /// ArgumentParser's own entry point, except that usage errors exit 2
    /// (the Unix convention the `callbacks` commands document), not 64.
    static func main() async {
        do {
            var command = try ThingSpaceListener.parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            if ThingSpaceListener.exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((ThingSpaceListener.fullMessage(for: error) + "\n").utf8))
                exit(2)
            }
            ThingSpaceListener.exit(withError: error)
        }
    }
}
