"""What the benchmark scripts share: the simulator's OAuth client and connecting users through it."""
import json
import urllib.request

CLIENT_ID, CLIENT_SECRET, REDIRECT = "bench-client", "bench-secret", "http://127.0.0.1:9/callback"


def post(url, body):
    """POSTs `body` as JSON and returns the decoded JSON answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def connect(sim, user):
    """Consent at the simulator, exchange the code, and return a `mioctx tokens import` line for the user."""
    code = post(f"{sim}/sim/authorize", {"userId": user})["code"]
    tokens = post(f"{sim}/v1/auth/oauth2/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
    })
    return {"userId": user, "accessToken": tokens["access_token"], "refreshToken": tokens["refresh_token"],
            "expiresIn": tokens["expires_in"]}
