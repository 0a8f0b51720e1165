import Foundation
import Hummingbird
import NIOCore

extension MioSimulator {
    /// Mio's consent page, as a browser sees it: `GET /connect?client_id&redirect_uri&scope&state` shows an
    /// "Allow" button (and a field naming the Mio account that consents, `mio-user` by default); allowing redirects
    /// to the redirect URL with a fresh authorization code and the state, denying with `error=access_denied`.
    /// A client id or redirect URI other than the registered ones gets an error page, never a redirect.
    func addConsentRoutes(to router: Router<BasicRequestContext>) {
        router.get("/connect") { request, _ -> Response in
            let query = request.uri.queryParameters
            guard query.get("client_id") == self.configuration.clientID,
                query.get("redirect_uri") == self.configuration.redirectURL
            else {
                return Self.consentPage(.badRequest, body: "<h1>Unknown application</h1><p>The client id or redirect URI is not registered.</p>")
            }
            let state = query.get("state") ?? ""
            let scope = query.get("scope") ?? ""
            return Self.consentPage(
                .ok,
                body: """
                    <h1>Connect your Mio account</h1>
                    <p>An application asks for: \(scope.htmlEscaped)</p>
                    <form method="post" action="/connect/decision">
                    <input type="hidden" name="state" value="\(state.htmlEscaped)">
                    <label>Mio account <input id="account" name="account" value="mio-user"></label>
                    <button id="allow" type="submit" name="decision" value="allow">Allow</button>
                    <button id="deny" type="submit" name="decision" value="deny">Deny</button>
                    </form>
                    """
            )
        }
        router.post("/connect/decision") { request, _ -> Response in
            guard let buffer = try? await request.body.collect(upTo: 64 * 1024) else {
                return Self.consentPage(.badRequest, body: "<h1>Bad request</h1>")
            }
            var form = URLComponents()
            form.percentEncodedQuery = String(buffer: buffer).replacingOccurrences(of: "+", with: "%20")
            let fields = Dictionary((form.queryItems ?? []).map { ($0.name, $0.value ?? "") }) { first, _ in first }
            let account = fields["account"].map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            var target = URLComponents(string: self.configuration.redirectURL) ?? URLComponents()
            var items = target.queryItems ?? []
            if fields["decision"] == "allow", !account.isEmpty {
                items.append(URLQueryItem(name: "code", value: self.authorize(userID: account)))
            } else {
                items.append(URLQueryItem(name: "error", value: "access_denied"))
            }
            items.append(URLQueryItem(name: "state", value: fields["state"] ?? ""))
            target.queryItems = items
            target.percentEncodedQuery = target.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
            return Response(status: .found, headers: [.location: target.string ?? self.configuration.redirectURL])
        }
    }

    private static func consentPage(_ status: HTTPResponse.Status, body: String) -> Response {
        let html = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Mio</title></head><body>\n"
            + body + "\n</body></html>\n"
        return Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html))
        )
    }
}

extension String {
    fileprivate var htmlEscaped: String {
        var result = ""
        for character in self {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }
}
