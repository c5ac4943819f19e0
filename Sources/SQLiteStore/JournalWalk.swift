// Reads every journal segment end to end for `store verify` and `store rebuild-index`, and goes
// on past what the start-up scan stops at: after damage in a segment, or a gap between two
// segments, it reports it and continues with the next segment, so that one bad file does not
// hide the state of the others. Read-only: it never cuts a tail (that is the service's start-up).
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What the walk meets, in journal order.
enum JournalWalkEvent {
    /// A valid record and the journal position after it.
    case record(JournalRecord, after: JournalPosition)
    /// Bytes that are not valid records where valid records must be; the rest of that segment is
    /// skipped.
    case damaged(path: String, offset: Int, reason: String)
    /// No segment holds these ids (a segment between two others is missing).
    case gap(ClosedRange<Int64>, before: String)
    /// A segment listed at the start was removed while the walk ran (the service removes
    /// segments once SQLite holds their records durably).
    case vanished(path: String)
    /// How the valid records of the newest segment end (`.clean` included).
    case tail(JournalTail)
}

/// Walks `directory` from its oldest segment. `visit` sees every event; errors other than damage
/// (a segment that cannot be opened or read) are thrown.
func walkJournal(_ directory: JournalDirectory, _ visit: (JournalWalkEvent) throws -> Void) throws {
    var start: JournalPosition?
    /// The id the next record should have, once a record or segment set it.
    var expected: Int64?
    /// A segment the walk restarted at its header (to step over a gap before it).
    var retried: Int64?
    while true {
        let scanner: JournalScanner
        var current: Int64?
        do {
            scanner = try JournalScanner(directory: directory, from: start)
            current = start?.segmentFirstID
            while let record = try scanner.next() {
                guard let position = scanner.position else { continue }
                current = position.segmentFirstID
                expected = record.id + 1
                try visit(.record(record, after: position))
            }
            try visit(.tail(scanner.tail))
            return
        } catch let error as JournalError {
            let segments = try directory.segments()
            switch error {
            case .damaged(let path, let offset, let reason):
                let firstID = segments.first { $0.path == path }?.firstID ?? JournalSegmentHeader.firstID(fileName: lastComponent(path))
                guard let firstID else {
                    try visit(.damaged(path: path, offset: offset, reason: reason))
                    return
                }
                if current != firstID && retried != firstID && offset == 0 {
                    // It failed as it was opened: its header, or the ids before it. Read it on its
                    // own once; a good header means the ids before it are missing.
                    retried = firstID
                    start = JournalPosition(segmentFirstID: firstID, offset: JournalSegmentHeader.size, nextID: firstID)
                    if let expected, firstID > expected {
                        try visit(.gap(expected...(firstID - 1), before: path))
                    } else {
                        try visit(.damaged(path: path, offset: offset, reason: reason))
                    }
                    expected = firstID
                    continue
                }
                try visit(.damaged(path: path, offset: offset, reason: reason))
                guard let next = segments.first(where: { $0.firstID > firstID }) else {
                    try visit(.tail(.clean))
                    return
                }
                start = JournalPosition(segmentFirstID: next.firstID, offset: JournalSegmentHeader.size, nextID: next.firstID)
                // The ids of the rest of the damaged segment are unknown: not reported as a gap.
                retried = next.firstID
                expected = next.firstID
            case .ioError(let path, _, let code) where code == ENOENT:
                try visit(.vanished(path: path))
                let firstID = JournalSegmentHeader.firstID(fileName: lastComponent(path)) ?? (current ?? 0)
                guard let next = segments.first(where: { $0.firstID > firstID }) else {
                    try visit(.tail(.clean))
                    return
                }
                start = JournalPosition(segmentFirstID: next.firstID, offset: JournalSegmentHeader.size, nextID: next.firstID)
                retried = next.firstID
                expected = next.firstID
            default:
                throw error
            }
        }
    }
}

private func lastComponent(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return path }
    return String(path[path.index(after: slash)...])
}
