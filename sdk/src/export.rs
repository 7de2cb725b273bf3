//! The plugin side of the ABI: what [`export_provider!`](crate::export_provider)
//! expands to. Plugin authors never call these functions themselves.
//!
//! This file and the macro's expansion are the only places in the SDK that use
//! `unsafe`: the host hands us raw pointers and lengths, and we must read and write
//! through them. Every entry catches panics, because unwinding across `extern "C"`
//! aborts the whole gateway.
#![allow(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::abi::{ABI_VERSION, PluginRecord, status};
use crate::descriptor::ProviderDescriptor;
use crate::hooks::{CLASSIFY_TOKEN_ERROR, TokenErrorClass, TokenErrorReport};

/// A provider as a plugin author declares it: a descriptor function and optional
/// hooks. Build it with [`Provider::new`] and pass it to
/// [`export_provider!`](crate::export_provider).
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    descriptor: fn() -> ProviderDescriptor,
    classify_token_error: Option<fn(&TokenErrorReport) -> TokenErrorClass>,
}

impl Provider {
    /// A data-only provider.
    pub const fn new(descriptor: fn() -> ProviderDescriptor) -> Self {
        Self {
            descriptor,
            classify_token_error: None,
        }
    }

    /// Adds the [`CLASSIFY_TOKEN_ERROR`] hook.
    pub const fn classify_token_error(
        mut self,
        hook: fn(&TokenErrorReport) -> TokenErrorClass,
    ) -> Self {
        self.classify_token_error = Some(hook);
        self
    }

    /// The names of the hooks this provider implements.
    pub fn hook_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.classify_token_error.is_some() {
            names.push(CLASSIFY_TOKEN_ERROR.to_owned());
        }
        names
    }

    /// The descriptor as it crosses the boundary: the author's data plus hook names.
    pub fn descriptor(&self) -> ProviderDescriptor {
        let mut descriptor = (self.descriptor)();
        descriptor.hooks = self.hook_names();
        descriptor
    }

    /// Runs a hook on JSON input, in-process. `Err` carries an ABI status code.
    pub fn call_hook(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, i32> {
        match name {
            CLASSIFY_TOKEN_ERROR => {
                let hook = self.classify_token_error.ok_or(status::UNKNOWN_HOOK)?;
                let report: TokenErrorReport =
                    serde_json::from_slice(input).map_err(|_| status::INVALID_INPUT)?;
                serde_json::to_vec(&hook(&report)).map_err(|_| status::INTERNAL)
            }
            _ => Err(status::UNKNOWN_HOOK),
        }
    }
}

/// Answers the host's ABI offer with `record`.
///
/// # Safety
/// `record_out` must be null or valid for one pointer write.
#[doc(hidden)]
pub unsafe fn entry(
    record: &'static PluginRecord,
    host_abi_max: u32,
    record_out: *mut *const PluginRecord,
) -> i32 {
    if record_out.is_null() {
        return status::INVALID_INPUT;
    }
    if host_abi_max < ABI_VERSION {
        return status::UNSUPPORTED_ABI;
    }
    quiet_panics();
    // SAFETY: checked non-null; the host passes a valid out-pointer per the ABI.
    unsafe { record_out.write(record) };
    status::OK
}

/// A plugin carries its own copy of std, hence its own panic hook: the default one
/// would print a multi-line backtrace into the gateway's log. Every panic is caught
/// and turned into a status code anyway; one line naming the place is enough.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!(
                "mailgate plugin panicked at {place}: {}",
                message.lines().next().unwrap_or("")
            );
        }));
    });
}

/// Serialises the descriptor into the host's buffer.
///
/// # Safety
/// `out` must be valid for `cap` byte writes (or `cap == 0`), `out_len` for one write.
#[doc(hidden)]
pub unsafe fn descriptor_json(
    provider: &Provider,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    let produced = catch_unwind(AssertUnwindSafe(|| {
        serde_json::to_vec(&provider.descriptor()).map_err(|_| status::INTERNAL)
    }));
    // SAFETY: forwarded from this function's contract.
    unsafe { finish(produced, out, cap, out_len) }
}

/// Runs a hook named by the host on JSON input and writes its JSON output.
///
/// # Safety
/// `name`/`input` must be valid for reads of their lengths; `out`/`out_len` as in
/// [`descriptor_json`].
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn hook(
    provider: &Provider,
    name: *const u8,
    name_len: usize,
    input: *const u8,
    input_len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    if name.is_null() || (input.is_null() && input_len > 0) {
        return status::INVALID_INPUT;
    }
    // SAFETY: non-null, and the host guarantees the lengths per the ABI.
    let name = unsafe { std::slice::from_raw_parts(name, name_len) };
    let input: &[u8] = if input_len == 0 {
        &[]
    } else {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(input, input_len) }
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return status::INVALID_INPUT;
    };
    let produced = catch_unwind(AssertUnwindSafe(|| provider.call_hook(name, input)));
    // SAFETY: forwarded from this function's contract.
    unsafe { finish(produced, out, cap, out_len) }
}

/// Applies the buffer protocol to a produced answer (or a caught panic).
///
/// # Safety
/// As [`descriptor_json`].
unsafe fn finish(
    produced: std::thread::Result<Result<Vec<u8>, i32>>,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    let bytes = match produced {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(code)) => return code,
        Err(_panic) => return status::PANIC,
    };
    if out_len.is_null() || (out.is_null() && cap > 0) {
        return status::INVALID_INPUT;
    }
    // SAFETY: checked non-null; valid for one write per the contract.
    unsafe { out_len.write(bytes.len()) };
    if bytes.len() > cap {
        return status::BUFFER_TOO_SMALL;
    }
    // SAFETY: `out` is valid for `cap >= bytes.len()` writes and cannot overlap a
    // buffer we just allocated.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
    status::OK
}

/// Exports a [`Provider`] as a mailgate plugin: defines the C entry point
/// `mailgate_plugin_entry`, the `'static` plugin record and its functions.
///
/// ```ignore
/// mailgate_sdk::export_provider!(
///     mailgate_sdk::Provider::new(descriptor).classify_token_error(classify)
/// );
/// ```
///
/// Use it once per `cdylib`, at the crate root.
#[macro_export]
macro_rules! export_provider {
    ($provider:expr $(,)?) => {
        // The expansion is the plugin side of the ABI: raw pointers in, so unsafe.
        #[allow(unsafe_code)]
        const _: () = {
            static PROVIDER: $crate::Provider = $provider;

            unsafe extern "C" fn descriptor_json(
                out: *mut u8,
                cap: usize,
                out_len: *mut usize,
            ) -> i32 {
                // SAFETY: the host upholds the buffer contract of `abi::DescriptorFn`.
                unsafe { $crate::export::descriptor_json(&PROVIDER, out, cap, out_len) }
            }

            unsafe extern "C" fn hook(
                name: *const u8,
                name_len: usize,
                input: *const u8,
                input_len: usize,
                out: *mut u8,
                cap: usize,
                out_len: *mut usize,
            ) -> i32 {
                // SAFETY: the host upholds the buffer contract of `abi::HookFn`.
                unsafe {
                    $crate::export::hook(
                        &PROVIDER, name, name_len, input, input_len, out, cap, out_len,
                    )
                }
            }

            static RECORD: $crate::abi::PluginRecord =
                $crate::abi::PluginRecord::new(descriptor_json, Some(hook));

            /// The plugin's one entry point (see `mailgate_sdk::abi::EntryFn`).
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn mailgate_plugin_entry(
                host_abi_max: u32,
                record_out: *mut *const $crate::abi::PluginRecord,
            ) -> i32 {
                // SAFETY: the host passes a valid out-pointer per `abi::EntryFn`.
                unsafe { $crate::export::entry(&RECORD, host_abi_max, record_out) }
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::TokenErrorAction;

    fn descriptor() -> ProviderDescriptor {
        crate::descriptor::tests::sample()
    }

    fn panicking() -> ProviderDescriptor {
        panic!("a plugin bug")
    }

    fn classify(_: &TokenErrorReport) -> TokenErrorClass {
        TokenErrorClass {
            action: TokenErrorAction::Retry,
            reason: "test".into(),
        }
    }

    fn call_descriptor(provider: &Provider, cap: usize) -> (i32, usize, Vec<u8>) {
        let mut buf = vec![0u8; cap];
        let mut len = 0usize;
        let code = unsafe { descriptor_json(provider, buf.as_mut_ptr(), cap, &mut len) };
        (code, len, buf)
    }

    #[test]
    fn descriptor_follows_the_buffer_protocol() {
        let provider = Provider::new(descriptor).classify_token_error(classify);
        let (code, needed, _) = call_descriptor(&provider, 4);
        assert_eq!(code, status::BUFFER_TOO_SMALL);
        let (code, len, buf) = call_descriptor(&provider, needed);
        assert_eq!(code, status::OK);
        let parsed: ProviderDescriptor = serde_json::from_slice(&buf[..len]).unwrap();
        assert_eq!(parsed.hooks, [CLASSIFY_TOKEN_ERROR]);
    }

    #[test]
    fn a_panic_becomes_a_status_code() {
        let (code, _, _) = call_descriptor(&Provider::new(panicking), 1024);
        assert_eq!(code, status::PANIC);
    }

    #[test]
    fn hooks_dispatch_by_name() {
        let provider = Provider::new(descriptor).classify_token_error(classify);
        let input = br#"{"http_status":400,"error":"invalid_grant"}"#;
        let out = provider.call_hook(CLASSIFY_TOKEN_ERROR, input).unwrap();
        let class: TokenErrorClass = serde_json::from_slice(&out).unwrap();
        assert_eq!(class.action, TokenErrorAction::Retry);
        assert_eq!(provider.call_hook("nope", b"{}"), Err(status::UNKNOWN_HOOK));
        assert_eq!(
            provider.call_hook(CLASSIFY_TOKEN_ERROR, b"not json"),
            Err(status::INVALID_INPUT)
        );
        assert_eq!(
            Provider::new(descriptor).call_hook(CLASSIFY_TOKEN_ERROR, input),
            Err(status::UNKNOWN_HOOK)
        );
    }

    #[test]
    fn entry_refuses_an_older_host() {
        static RECORD: PluginRecord = PluginRecord::new(dummy, None);
        extern "C" fn dummy(_: *mut u8, _: usize, _: *mut usize) -> i32 {
            0
        }
        let mut out: *const PluginRecord = std::ptr::null();
        assert_eq!(
            unsafe { entry(&RECORD, 0, &mut out) },
            status::UNSUPPORTED_ABI
        );
        assert!(out.is_null());
        assert_eq!(
            unsafe { entry(&RECORD, ABI_VERSION + 3, &mut out) },
            status::OK
        );
        assert!(std::ptr::eq(out, &RECORD));
    }
}
