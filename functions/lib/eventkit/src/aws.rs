//! Shared AWS client setup, so every function builds its clients the same way, once.

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL*` when pointed at LocalStack).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A required environment variable, with an error naming it.
pub fn required_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}
