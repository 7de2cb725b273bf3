//! The checks that need both the configuration and the loaded plugins: does every
//! account name a provider that loaded, and does that provider support its flow?
//! Shared by `check-config` and `serve`, so both refuse the same configurations.

use mailgate_sdk::descriptor::is_valid_tenant;

use crate::config::{AccountConfig, Config, ConfigProblem};
use crate::plugin::PluginSet;

/// Every problem with the accounts given the plugins that loaded.
pub fn check_accounts(config: &Config, plugins: &PluginSet) -> Vec<ConfigProblem> {
    config
        .accounts
        .iter()
        .enumerate()
        .flat_map(|(index, account)| check_account(index, account, plugins))
        .collect()
}

fn check_account(index: usize, account: &AccountConfig, plugins: &PluginSet) -> Vec<ConfigProblem> {
    let at = |field: &str| format!("accounts[{index}] (id {:?}).{field}", account.id);
    let problem = |field: &str, message: String| ConfigProblem {
        location: at(field),
        line: None,
        message,
    };
    let Some(plugin) = plugins.get(&account.provider) else {
        let mut known: Vec<_> = plugins.loaded().iter().map(|p| p.id()).collect();
        known.sort();
        return vec![problem(
            "provider",
            format!(
                "no loaded plugin provides {:?} (loaded: {}); check the plugin folder and `mailgate plugins list`",
                account.provider,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )];
    };
    let descriptor = &plugin.descriptor;
    let mut problems = Vec::new();
    if descriptor.flow(account.flow).is_none() {
        let offered: Vec<_> = descriptor.flows.iter().map(|f| f.flow.as_str()).collect();
        problems.push(problem(
            "flow",
            format!(
                "provider {:?} does not support flow {}; it offers: {}",
                descriptor.id,
                account.flow,
                offered.join(", ")
            ),
        ));
    }
    let templated = [
        descriptor.endpoints.authorize.as_deref(),
        Some(descriptor.endpoints.token.as_str()),
        descriptor.endpoints.device_authorization.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|url| url.contains("{tenant}"));
    let tenant = account
        .tenant
        .as_ref()
        .or(descriptor.default_tenant.as_ref());
    if templated && tenant.is_none_or(|t| !is_valid_tenant(t)) {
        problems.push(problem(
            "tenant",
            format!(
                "provider {:?} needs a tenant for its endpoints and has no default; set tenant",
                descriptor.id
            ),
        ));
    }
    problems
}
