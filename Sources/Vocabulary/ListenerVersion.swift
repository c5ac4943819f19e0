/// The listener's version: in `--version`, the webhook User-Agent and `/metrics`' build info.
public enum ListenerVersion {
    public static let current = "0.10.0"
}
