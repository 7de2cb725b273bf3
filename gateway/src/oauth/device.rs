//! The device authorization grant (RFC 8628): show a code and a URL, then poll the
//! token endpoint honouring `interval` and `slow_down` until a person approves.

use std::time::Duration;

use oauth2::{DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse};
use oauth2::{DeviceCodeErrorResponseType, RequestTokenError};

use super::client::{StatusRecorder, base_client, token_set};
use super::{OAuthError, OAuthSettings, TokenSet};

/// What to show the person who approves.
#[derive(Debug)]
pub struct DeviceAuthorization {
    /// Open this URL...
    pub verification_uri: String,
    /// ...and enter this code.
    pub user_code: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
    details: StandardDeviceAuthorizationResponse,
}

/// Asks the device authorization endpoint for a code.
pub async fn start_device(settings: &OAuthSettings) -> Result<DeviceAuthorization, OAuthError> {
    let url = settings
        .endpoints
        .device_authorization
        .clone()
        .ok_or_else(|| {
            OAuthError::Settings(format!(
                "account {:?}: the provider has no device authorization endpoint",
                settings.account_id
            ))
        })?;
    let url = DeviceAuthorizationUrl::new(url)
        .map_err(|e| OAuthError::Settings(format!("device authorization URL: {e}")))?;
    let client = base_client(settings)?.set_device_authorization_url(url);
    let http = StatusRecorder::new(settings)?;
    let sender = |req| {
        let http = http.clone();
        async move { http.send(req).await }
    };
    let mut request = client.exchange_device_code();
    for scope in &settings.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let details: StandardDeviceAuthorizationResponse =
        request.request_async(&sender).await.map_err(|e| {
            super::client::token_error(
                settings
                    .endpoints
                    .device_authorization
                    .as_deref()
                    .unwrap_or(""),
                http.last_status(),
                e,
            )
        })?;
    Ok(DeviceAuthorization {
        verification_uri: details.verification_uri().to_string(),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in().as_secs(),
        details,
    })
}

/// Polls until the code is approved, denied or expired. `oauth2` honours `interval`
/// and lengthens it on `slow_down`.
pub async fn poll_device(
    settings: &OAuthSettings,
    authorization: &DeviceAuthorization,
) -> Result<TokenSet, OAuthError> {
    let client = base_client(settings)?;
    let http = StatusRecorder::new(settings)?;
    let sender = |req| {
        let http = http.clone();
        async move { http.send(req).await }
    };
    let timeout = Duration::from_secs(authorization.expires_in.max(1));
    let response = client
        .exchange_device_access_token(&authorization.details)
        .request_async(&sender, tokio::time::sleep, Some(timeout))
        .await
        .map_err(|err| match err {
            RequestTokenError::ServerResponse(body) => match body.error() {
                DeviceCodeErrorResponseType::ExpiredToken => OAuthError::DeviceExpired,
                DeviceCodeErrorResponseType::AccessDenied => {
                    OAuthError::Declined("the person declined the device code".into())
                }
                other => OAuthError::Refused(mailgate_sdk::hooks::TokenErrorReport {
                    http_status: http.last_status().max(400),
                    error: Some(other.to_string()),
                    error_description: body.error_description().cloned(),
                    error_codes: vec![],
                }),
            },
            RequestTokenError::Request(e) => OAuthError::Unreachable {
                url: settings.endpoints.token.clone(),
                message: e.to_string(),
            },
            RequestTokenError::Parse(e, _) => OAuthError::Unreachable {
                url: settings.endpoints.token.clone(),
                message: format!("unreadable answer: {e}"),
            },
            RequestTokenError::Other(message)
                if message.contains("timed out") || message.contains("timeout") =>
            {
                OAuthError::DeviceExpired
            }
            RequestTokenError::Other(message) => OAuthError::Unreachable {
                url: settings.endpoints.token.clone(),
                message,
            },
        })?;
    Ok(token_set(&response, None))
}
