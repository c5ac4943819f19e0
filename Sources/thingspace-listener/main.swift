import ArgumentParser
import ListenerApp

struct ThingSpaceListener: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thingspace-listener",
        abstract: "Receive, store and acknowledge Verizon ThingSpace callbacks."
    )
}
ThingSpaceListener.main()
