//! Shared AWS client setup, so every function builds its clients the same way, once.
//!
//! Cold start. The SDK's default HTTPS client (aws-smithy-http-client with rustls) trusts the
//! platform's root certificates, read from disk by rustls-native-certs (on Debian: a bundle
//! and ~300 files under /etc/ssl/certs), and it builds a TLS connector as each service client
//! is created, precisely so that this loading happens at init rather than at the first
//! request (`validate_base_client_config`, smithy-lang/smithy-rs#3262). Measured with
//! `make bench-coldstart`, that was most of a function's cold start (about 300 statx and 150
//! openat calls; 6-10 ms to the first poll before, ~3 ms after, ~1.7 ms for a bare
//! lambda_runtime binary on the same machine). Here the clients share an
//! HTTPS client that trusts Mozilla's root program compiled into the binary (webpki-root-certs;
//! the same choice as DataDog/datadog-lambda-extension#1276), and builds its connector at the
//! first request instead of at every client's creation. Everything else is the SDK's default
//! client: rustls with aws-lc, the same connector settings and timeouts, proxies from the
//! environment, plain `http://` for an `AWS_ENDPOINT_URL` such as LocalStack's.
//!
//! AWS service endpoints present certificates that chain to Amazon Trust Services' roots
//! ("Amazon Trust Services", https://www.amazontrust.com/repository/), which are in
//! Mozilla's program; a test below checks that the compiled-in store has them. What this
//! gives up: a CA installed only in the OS store (a TLS-inspecting proxy's) is not trusted.
//! The roots are as fresh as the webpki-root-certs release in Cargo.lock.

use std::sync::LazyLock;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::config_bag::ConfigBag;
use base64::Engine;

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL*` when pointed at LocalStack), with [`https_client`] as every client's
/// HTTP client.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK's default HTTPS client (as aws-smithy-runtime builds it for the latest behavior
/// version), but trusting the compiled-in Mozilla roots and connecting on first use.
pub fn https_client() -> SharedHttpClient {
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(MOZILLA_ROOTS.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    ConnectOnFirstRequest(client).into_shared()
}

/// Mozilla's root program as the only trust anchors. PEM because that is what the SDK's
/// `TrustStore` takes; encoded once, when the first connector is built.
static MOZILLA_ROOTS: LazyLock<TlsContext> = LazyLock::new(|| {
    let store = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(pem_bundle(webpki_root_certs::TLS_SERVER_ROOT_CERTS));
    TlsContext::builder()
        .with_trust_store(store)
        .build()
        // Building a context only moves the store into it; should that ever fail, the SDK's
        // own default (the platform's roots) is still a correct trust store.
        .unwrap_or_default()
});

/// DER certificates as one PEM bundle.
fn pem_bundle(certificates: &[rustls_pki_types::CertificateDer<'_>]) -> Vec<u8> {
    let mut pem = Vec::with_capacity(certificates.iter().map(|c| c.len() * 4 / 3 + 80).sum());
    for certificate in certificates {
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// An HTTP client whose connector is first built when a request needs it.
///
/// The SDK calls `validate_base_client_config` as each service client is created; the
/// default client answers by building (and dropping) a TLS connector so that root
/// certificates load then. With compiled-in roots there is nothing worth loading early, so
/// this accepts the configuration as the trait's default does, and leaves the connector to
/// `http_connector`, which builds it once per connector settings and caches it.
#[derive(Debug)]
struct ConnectOnFirstRequest(SharedHttpClient);

impl HttpClient for ConnectOnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// A required environment variable, with an error naming it.
pub fn required_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    #[test]
    fn the_pem_bundle_holds_every_mozilla_root_unchanged() {
        let bundle = pem_bundle(webpki_root_certs::TLS_SERVER_ROOT_CERTS);
        let parsed: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bundle)
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(parsed.as_slice(), webpki_root_certs::TLS_SERVER_ROOT_CERTS);
    }

    #[test]
    fn amazon_trust_services_roots_are_trusted() {
        // AWS endpoints chain to these (https://www.amazontrust.com/repository/).
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
        ] {
            assert!(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .any(|c| c.as_ref().windows(name.len()).any(|w| w == name.as_bytes())),
                "{name} is not in the compiled-in trust store"
            );
        }
    }

    /// LocalStack is plain HTTP at AWS_ENDPOINT_URL: a request through [`https_client`] to a
    /// local HTTP server must arrive and its answer be read.
    #[tokio::test]
    async fn plain_http_endpoints_are_reached() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The request is small: read until its JSON body's closing brace.
            while !request.ends_with(b"}") {
                let n = stream.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = br#"{"TableNames":["orders"]}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.expect("write");
            stream.write_all(body).await.expect("write");
            String::from_utf8_lossy(&request).into_owned()
        });

        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https_client())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .load()
            .await;
        let tables = aws_sdk_dynamodb::Client::new(&config)
            .list_tables()
            .send()
            .await
            .expect("ListTables through the plain-HTTP endpoint");
        assert_eq!(tables.table_names(), ["orders"]);
        let request = server.await.expect("server");
        assert!(
            request.contains("DynamoDB_20120810.ListTables"),
            "{request}"
        );
    }
}
