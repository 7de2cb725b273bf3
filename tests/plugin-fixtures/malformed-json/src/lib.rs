//! Bad plugin: a correct record whose descriptor function writes truncated JSON.
#![allow(unsafe_code)] // a deliberately broken export, written without the macro

use mailgate_sdk::abi::{PluginRecord, status};

const BROKEN: &[u8] = br#"{"id": "malformed-json", "display_name": "#;

extern "C" fn descriptor_json(out: *mut u8, cap: usize, out_len: *mut usize) -> i32 {
    // SAFETY: the host passes valid pointers per the buffer protocol.
    unsafe { out_len.write(BROKEN.len()) };
    if cap < BROKEN.len() {
        return status::BUFFER_TOO_SMALL;
    }
    // SAFETY: `out` holds at least `cap >= BROKEN.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(BROKEN.as_ptr(), out, BROKEN.len()) };
    status::OK
}

static RECORD: PluginRecord = PluginRecord::new(descriptor_json, None);

/// # Safety
/// The host passes a valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailgate_plugin_entry(
    _host_abi_max: u32,
    record_out: *mut *const PluginRecord,
) -> i32 {
    // SAFETY: per the ABI the host passes a valid pointer.
    unsafe { record_out.write(&RECORD) };
    status::OK
}
