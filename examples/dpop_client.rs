//! A DPoP client (RFC 9449): signs a proof for one request with the client's private key, and
//! prints it or sends the request.
//!
//! Run with
//!
//! ```not_rust
//! cargo run --example server -- --require-dpop        # prints DPOP_KEY and DPoP-bound tokens
//! cargo run --example dpop_client -- --key $DPOP_KEY --token $READER_TOKEN GET http://127.0.0.1:3000/items
//! cargo run --example dpop_client -- --send --key $DPOP_KEY --token $READER_TOKEN GET http://127.0.0.1:3000/items
//! ```
//!
//! Without `--send` it prints the proof, for a `DPoP:` header:
//!
//! ```not_rust
//! curl -H "Authorization: DPoP $READER_TOKEN" \
//!      -H "DPoP: $(cargo run -q --example dpop_client -- --key $DPOP_KEY --token $READER_TOKEN GET http://127.0.0.1:3000/items)" \
//!      http://127.0.0.1:3000/items
//! ```
//!
//! With `--send` it makes the request itself (`Authorization: DPoP <token>` and the proof) and
//! prints the status, any `WWW-Authenticate` and `DPoP-Nonce` headers, and the body.
//!
//! `--key` is a PKCS#8 private key (P-256, P-384 or Ed25519) in base64url, as dev mode prints
//! it; `--nonce` adds a server nonce. A proof is a JWT with header
//! `{"typ":"dpop+jwt","alg":…,"jwk":<public key>}` and claims `jti` (random), `htm` (method),
//! `htu` (URL without query), `iat` (now) and `ath` (base64url SHA-256 of the token), signed
//! by the key; every request needs a fresh one.

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_bearer::testing::DpopKey;

const USAGE: &str =
    "usage: dpop_client [--send] --key KEY --token TOKEN [--nonce NONCE] METHOD URL";

struct Args {
    send: bool,
    key: String,
    token: String,
    nonce: Option<String>,
    method: String,
    url: String,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut send, mut key, mut token, mut nonce, mut rest) = (false, None, None, None, vec![]);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--send" => send = true,
            "--key" => key = args.next(),
            "--token" => token = args.next(),
            "--nonce" => nonce = args.next(),
            "--help" | "-h" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown argument `{s}`")),
            _ => rest.push(arg),
        }
    }
    let [method, url] =
        <[String; 2]>::try_from(rest).map_err(|_| "give METHOD and URL".to_owned())?;
    Ok(Args {
        send,
        key: key.ok_or("--key is required")?,
        token: token.ok_or("--token is required")?,
        nonce,
        method: method.to_ascii_uppercase(),
        url,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let der = URL_SAFE_NO_PAD
        .decode(args.key.trim())
        .map_err(|_| "--key must be base64url".to_owned())?;
    let key = DpopKey::from_pkcs8(&der).map_err(|e| e.to_string())?;
    // `htu` is the URL without query and fragment (RFC 9449 §4.2).
    let htu = args.url.split(['?', '#']).next().unwrap_or(&args.url);
    let mut proof = key.proof(&args.method, htu).access_token(&args.token);
    if let Some(nonce) = &args.nonce {
        proof = proof.nonce(nonce);
    }
    let proof = proof.sign();
    if !args.send {
        println!("{proof}");
        return Ok(());
    }
    let request = http::Request::builder()
        .method(args.method.as_str())
        .uri(&args.url)
        .header("authorization", format!("DPoP {}", args.token))
        .header("dpop", proof)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
                .await
                .map_err(|_| "no answer within 10 s".to_owned())?
                .map_err(|e| format!("request failed: {e}"))?;
        println!("{}", response.status());
        for name in ["www-authenticate", "dpop-nonce"] {
            for value in response.headers().get_all(name) {
                println!("{name}: {}", value.to_str().unwrap_or("?"));
            }
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        println!("{}", String::from_utf8_lossy(&body));
        Ok(())
    })
}
