// TokenProvider for iOS: fetches Twilio Access Tokens from Token Broker and hands a fresh
// one to the Twilio SDKs before the old one expires (Twilio error 20104 otherwise).
//
// Voice (TwilioVoice): pass `accessToken` to TwilioVoiceSDK.connect / register, and on
//   the `callInviteReceived` path re-register with a fresh token ahead of expiry.
// Conversations (TwilioConversationsClient): implement
//   `conversationsClientTokenWillExpire(_:)` and call `client.updateToken(_:)`.
// Video (TwilioVideo): build ConnectOptions(token:) with a fresh token for each connect.
//
// App attestation: where the broker's policy requires it for the grants asked for, pass
// `appCheckToken`, e.g. with Firebase App Check (FirebaseAppCheck, App Attest provider):
//   { try await AppCheck.appCheck().limitedUseToken().token }   // attestation = "limited_use"
//   { try await AppCheck.appCheck().token(forcingRefresh: false).token }   // "required"
import Foundation

/// The broker refused: its status, its stable problem code, and (429, 503) how many seconds
/// to wait before asking again (`Retry-After`); until then the provider does not ask.
struct BrokerRefusal: Error {
    let status: Int
    let code: String
    let retryAfter: TimeInterval?
}

struct IssuedToken: Decodable {
    let token: String
    let identity: String
    let expires_at: String
    let ttl: Int
    let grants: [String]
}

final class TokenProvider {
    private let brokerURL: URL
    private let sessionToken: () async throws -> String   // your identity provider's token
    private let appCheckToken: (() async throws -> String)?   // Firebase App Check, if required
    private var current: IssuedToken?
    private var expiry = Date.distantPast
    private let refreshMargin: TimeInterval = 60
    private var refusal: BrokerRefusal?
    private var notBefore = Date.distantPast

    init(
        brokerURL: URL,
        sessionToken: @escaping () async throws -> String,
        appCheckToken: (() async throws -> String)? = nil
    ) {
        self.brokerURL = brokerURL
        self.sessionToken = sessionToken
        self.appCheckToken = appCheckToken
    }

    /// A token for `grants`, fetched again when within a minute of its expiry.
    func token(grants: [String: [String: String]]) async throws -> String {
        if let current, expiry.timeIntervalSinceNow > refreshMargin { return current.token }
        if let refusal, notBefore.timeIntervalSinceNow > 0 {   // Retry-After has not passed
            throw BrokerRefusal(status: refusal.status, code: refusal.code,
                                retryAfter: notBefore.timeIntervalSinceNow)
        }
        var request = URLRequest(url: brokerURL.appendingPathComponent("v1/tokens"))
        request.httpMethod = "POST"
        request.setValue("Bearer \(try await sessionToken())", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let appCheckToken {   // beside the caller's token, in a header of its own
            request.setValue(try await appCheckToken(), forHTTPHeaderField: "X-Firebase-AppCheck")
        }
        request.httpBody = try JSONSerialization.data(withJSONObject: ["grants": grants])
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        guard let http, http.statusCode == 200 else {
            let problem = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            let wait = (http?.value(forHTTPHeaderField: "Retry-After")).flatMap(TimeInterval.init)
            let refused = BrokerRefusal(status: http?.statusCode ?? 0,
                                        code: problem?["code"] as? String ?? "", retryAfter: wait)
            if let wait {   // 429, 503: schedule the next try after it, not at once
                refusal = refused
                notBefore = Date().addingTimeInterval(wait)
            }
            throw refused
        }
        let issued = try JSONDecoder().decode(IssuedToken.self, from: data)
        current = issued
        expiry = ISO8601DateFormatter().date(from: issued.expires_at) ?? Date()
        return issued.token
    }
}
