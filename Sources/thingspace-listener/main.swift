import ArgumentParser

@main
struct ThingSpaceListener: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thingspace-listener",
        abstract: "Receive, store and acknowledge Verizon ThingSpace callbacks.",
        discussion: """
            Run `serve` as the service. The other commands inspect what was received, \
            manage ThingSpace callback registrations by hand, and help testing.
            """,
        subcommands: [Serve.self, Messages.self, Callbacks.self, SendTest.self]
    )
}
