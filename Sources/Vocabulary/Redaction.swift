// The one marker shown in place of a secret, in descriptions, log lines and
// stored bodies alike, so a search for it finds every redaction.

public enum Redaction {
    /// Printed (and stored, for a callback's password) instead of a secret.
    public static let marker = "<redacted>"
}
