//! The admin API's HTTP/JSON face as `gatehouse apply` calls it, with the admin token.

use std::fmt::Write as _;

use anyhow::Context as _;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin::model::ErrorBody;

/// The admin API's HTTP/JSON face, authenticated with the admin token.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) token: String,
}

impl Client {
    /// Reads one document.
    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, None).await
    }

    /// Sends one change; a refusal is reported with the API's message and diagnostics.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<T> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}{path}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .with_context(|| format!("{path}: unexpected response"));
        }
        let body: ErrorBody = response.json().await.unwrap_or(ErrorBody {
            error: status.to_string(),
            message: String::new(),
            diagnostics: Vec::new(),
        });
        let mut message = format!("{path}: {} ({}): {}", status, body.error, body.message);
        for diagnostic in body.diagnostics {
            let _ = write!(message, "\n  {}", diagnostic.message);
            if let Some(help) = diagnostic.help {
                let _ = write!(message, " (help: {help})");
            }
        }
        anyhow::bail!(message)
    }
}
