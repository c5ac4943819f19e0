import Vocabulary

/// A received callback, ready to be stored: what the handler submits.
public struct NewCallback: Sendable, Hashable {
    /// UTC milliseconds since the Unix epoch.
    public var receivedAt: Int64
    public var service: String
    public var requestID: String?
    public var deviceIDs: [DeviceID]
    public var status: String?
    public var callbackCount: Int?
    public var remoteAddress: String
    /// Deliveries with the same key are repeats of one callback.
    public var dedupKey: String
    /// The JSON object exactly as received, with the top-level password already redacted.
    public var body: [UInt8]

    public init(
        receivedAt: Int64,
        service: String,
        requestID: String? = nil,
        deviceIDs: [DeviceID] = [],
        status: String? = nil,
        callbackCount: Int? = nil,
        remoteAddress: String,
        dedupKey: String,
        body: [UInt8]
    ) {
        self.receivedAt = receivedAt
        self.service = service
        self.requestID = requestID
        self.deviceIDs = deviceIDs
        self.status = status
        self.callbackCount = callbackCount
        self.remoteAddress = remoteAddress
        self.dedupKey = dedupKey
        self.body = body
    }
}

/// A callback as stored: its id, the id of the first delivery it repeats, and
/// what was submitted (whose fields read through, as in `row.service`).
@dynamicMemberLookup
public struct StoredCallback: Sendable, Hashable {
    public var id: Int64
    /// The id of the first stored callback with the same dedup key; nil when this one is the first.
    public var duplicateOf: Int64?
    /// The submitted fields.
    public var callback: NewCallback

    public init(id: Int64, duplicateOf: Int64?, callback: NewCallback) {
        self.id = id
        self.duplicateOf = duplicateOf
        self.callback = callback
    }

    public subscript<Value>(dynamicMember field: KeyPath<NewCallback, Value>) -> Value { callback[keyPath: field] }

    public var isDuplicate: Bool { duplicateOf != nil }
}

/// Proof that a callback is committed to disk.
public struct CommitReceipt: Sendable, Hashable {
    public var id: Int64
    public var duplicateOf: Int64?

    public init(id: Int64, duplicateOf: Int64?) {
        self.id = id
        self.duplicateOf = duplicateOf
    }
}

/// What `messages list` asks for. Every set field must match; results are newest first.
public struct CallbackFilter: Sendable, Hashable {
    public var service: String?
    public var requestID: String?
    /// Matches a callback naming this device id (of any kind).
    public var deviceID: String?
    /// Only callbacks received at or after this time (UTC milliseconds).
    public var since: Int64?
    public var limit: Int
    /// When false, only first deliveries are listed.
    public var includeDuplicates: Bool

    public init(
        service: String? = nil,
        requestID: String? = nil,
        deviceID: String? = nil,
        since: Int64? = nil,
        limit: Int = 100,
        includeDuplicates: Bool = false
    ) {
        self.service = service
        self.requestID = requestID
        self.deviceID = deviceID
        self.since = since
        self.limit = limit
        self.includeDuplicates = includeDuplicates
    }
}

/// What `messages stats` shows. Counts include repeats; `duplicates` says how many of them are repeats.
public struct CallbackStats: Sendable, Hashable {
    public struct Count: Sendable, Hashable {
        /// The service, status or UTC day (`YYYY-MM-DD`); nil for callbacks without a status.
        public var key: String?
        public var count: Int
        public var duplicates: Int

        public init(key: String?, count: Int, duplicates: Int) {
            self.key = key
            self.count = count
            self.duplicates = duplicates
        }
    }

    public var total: Int
    public var duplicates: Int
    /// Sorted by key.
    public var byService: [Count]
    /// Sorted by key, nil (no status) first.
    public var byStatus: [Count]
    /// Sorted by day, oldest first.
    public var byDay: [Count]

    public init(total: Int, duplicates: Int, byService: [Count], byStatus: [Count], byDay: [Count]) {
        self.total = total
        self.duplicates = duplicates
        self.byService = byService
        self.byStatus = byStatus
        self.byDay = byDay
    }
}
