// TokenProvider for Android: fetches Twilio Access Tokens from Token Broker and hands a
// fresh one to the Twilio SDKs before the old one expires (Twilio error 20104 otherwise).
//
// Voice (com.twilio.voice): Voice.register(token, ...) / Voice.connect(context, options)
//   with a fresh token; re-register ahead of expiry.
// Conversations (com.twilio.conversations): in ConversationsClientListener override
//   onTokenAboutToExpire() and call client.updateToken(token, listener).
// Video (com.twilio.video): ConnectOptions.Builder(token) with a fresh token per connect.
//
// App attestation: where the broker's policy requires it for the grants asked for, pass
// appCheckToken, e.g. with Firebase App Check (Play Integrity provider), off the main thread:
//   { Tasks.await(FirebaseAppCheck.getInstance().limitedUseAppCheckToken).token }  // "limited_use"
//   { Tasks.await(FirebaseAppCheck.getInstance().getAppCheckToken(false)).token }  // "required"
package com.example.tokens

import java.net.HttpURLConnection
import java.net.URL
import java.time.Instant
import org.json.JSONObject

/** The broker refused: its status, its stable problem code, and (429, 503) how many seconds
 *  to wait before asking again (Retry-After); until then the provider does not ask. */
class BrokerRefusal(val status: Int, val code: String, val retryAfterSeconds: Long?) :
    Exception("token broker said $status $code")

class TokenProvider(
    private val brokerUrl: String,
    private val sessionToken: () -> String,   // your identity provider's token
    private val appCheckToken: (() -> String)? = null,   // Firebase App Check, if required
    private val refreshMarginSeconds: Long = 60,
) {
    private var token: String? = null
    private var expiresAt: Instant = Instant.EPOCH
    private var refusal: BrokerRefusal? = null
    private var notBefore: Instant = Instant.EPOCH

    /** A token for [grants]; fetched again when within the margin of its expiry. Call off the main thread. */
    @Synchronized
    fun token(grants: JSONObject): String {
        val cached = token
        if (cached != null && Instant.now().plusSeconds(refreshMarginSeconds).isBefore(expiresAt)) return cached
        refusal?.let {   // Retry-After has not passed: do not ask again yet
            val left = notBefore.epochSecond - Instant.now().epochSecond
            if (left > 0) throw BrokerRefusal(it.status, it.code, left)
        }
        val connection = URL("$brokerUrl/v1/tokens").openConnection() as HttpURLConnection
        connection.requestMethod = "POST"
        connection.doOutput = true
        connection.setRequestProperty("Authorization", "Bearer ${sessionToken()}")
        connection.setRequestProperty("Content-Type", "application/json")
        // Beside the caller's token, in a header of its own.
        appCheckToken?.let { connection.setRequestProperty("X-Firebase-AppCheck", it()) }
        connection.outputStream.use { it.write(JSONObject().put("grants", grants).toString().toByteArray()) }
        if (connection.responseCode != 200) {
            val problem = connection.errorStream?.bufferedReader()?.readText() ?: "{}"
            val wait = connection.getHeaderField("Retry-After")?.toLongOrNull()
            val refused = BrokerRefusal(connection.responseCode, JSONObject(problem).optString("code"), wait)
            if (wait != null) {   // 429, 503: schedule the next try after it, not at once
                refusal = refused
                notBefore = Instant.now().plusSeconds(wait)
            }
            throw refused
        }
        val issued = JSONObject(connection.inputStream.bufferedReader().readText())
        token = issued.getString("token")
        expiresAt = Instant.parse(issued.getString("expires_at"))
        return token!!
    }
}
