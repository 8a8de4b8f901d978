//! An agent bundle's own budget (its `quotas`): carried in the bundle's tokens so that every
//! edge charges the bundle's calls to one bucket, with no lookup per call.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Is a bundle's own rate limit: every call made on the bundle's own token is charged to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentQuota {
    /// Is the sustained rate, `n/second|minute|hour|day`, as rate-limit rules write it.
    pub rate: String,
    /// Is how many calls may come at once after a quiet spell; 1 (strict pacing) by default.
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// Reads a bundle's `quotas`: null or `{}` is no budget of its own; anything else must be a
/// valid quota, so that a typo is refused when the bundle is written, not ignored at the edge.
pub(crate) fn parse(quotas: &serde_json::Value) -> Result<Option<AgentQuota>, Error> {
    let invalid = |reason: String| Error::InvalidRequest(format!("quotas: {reason}"));
    match quotas {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Object(fields) if fields.is_empty() => return Ok(None),
        _ => {}
    }
    let quota: AgentQuota = serde_json::from_value(quotas.clone())
        .map_err(|error| invalid(format!("{error}; write {{rate: \"60/minute\", burst: 10}}")))?;
    let rate: limits::Rate = quota.rate.parse().map_err(invalid)?;
    if limits::Quota::new(rate, quota.burst).is_none() {
        return Err(invalid("burst must be at least 1".to_owned()));
    }
    Ok(Some(quota))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn no_quotas_is_no_budget_and_a_valid_one_is_kept() {
        assert_eq!(parse(&json!(null)).unwrap(), None);
        assert_eq!(parse(&json!({})).unwrap(), None);
        assert_eq!(
            parse(&json!({"rate": "60/minute", "burst": 10})).unwrap(),
            Some(AgentQuota {
                rate: "60/minute".to_owned(),
                burst: 10
            })
        );
        assert_eq!(
            parse(&json!({"rate": "5/second"})).unwrap().unwrap().burst,
            1
        );
    }

    #[test]
    fn a_malformed_quota_is_refused_naming_the_field() {
        for bad in [
            json!({"requests_per_minute": 60}),
            json!({"rate": "sixty"}),
            json!({"rate": "0/minute"}),
            json!({"rate": "6/minute", "burst": 0}),
            json!("60/minute"),
        ] {
            let error = parse(&bad).expect_err("refused").to_string();
            assert!(error.contains("quotas"), "{bad}: {error}");
        }
    }
}
