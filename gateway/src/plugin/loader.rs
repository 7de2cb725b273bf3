//! The one place the gateway calls into foreign code: opening a plugin library,
//! answering its ABI handshake and calling its exported functions.
//!
//! `unsafe` is allowed in this file only (ARCHITECTURE.md). Each block relies on the
//! same two facts: the file passed the checks in `checks.rs` (so it is the admin's own,
//! pinned code), and the library is never unloaded (so `'static` borrows of its record
//! and functions stay valid for the life of the process).
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

use libloading::Library;
use mailgate_sdk::abi::{
    ABI_VERSION, BUILD_SIGNATURE, DescriptorFn, ENTRY_SYMBOL, EntryFn, HookFn, PluginRecord,
    RecordHeader, signature_text, status,
};

use super::error::RefusalReason;

/// The largest JSON answer accepted from a plugin; a descriptor is a few KiB.
const MAX_ANSWER: usize = 1 << 20;

/// A plugin's functions, valid for the rest of the process.
#[derive(Debug, Clone, Copy)]
pub struct Exports {
    /// ABI version the plugin implements.
    pub abi_version: u32,
    descriptor_json: DescriptorFn,
    hook: Option<HookFn>,
}

/// Maps `file` (already inspected and hashed) and performs the ABI handshake.
pub fn open(file: File) -> Result<Exports, RefusalReason> {
    // Load through the descriptor we hashed, not the path, so the checked bytes are
    // the loaded bytes even if the path is replaced meanwhile.
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: running the library's initialisers is the point of loading a plugin;
    // the file passed the ownership, mode and pin checks first.
    let library = unsafe { Library::new(&path) }
        .map_err(|e| RefusalReason::Open(e.to_string().replace(&path, "the file")))?;
    // The descriptor stays open for good: the dynamic linker remembers a library by
    // the name it was opened with, and a closed fd number reused for the next plugin
    // would make `dlopen` hand back this library instead of the new file.
    std::mem::forget(file);
    // Never unloaded: the record, descriptor and hook functions are 'static from here.
    let library: &'static Library = Box::leak(Box::new(library));

    // SAFETY: the symbol is declared by the ABI with exactly the `EntryFn` type.
    let entry = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }.map_err(|_| {
        RefusalReason::MissingEntry {
            symbol: ENTRY_SYMBOL,
        }
    })?;
    let mut record: *const PluginRecord = std::ptr::null();
    // SAFETY: `record` is a valid out-pointer for the duration of the call.
    match unsafe { entry(ABI_VERSION, &mut record) } {
        status::OK => {}
        status::UNSUPPORTED_ABI => {
            return Err(RefusalReason::AbiOfferRefused {
                host_max: ABI_VERSION,
            });
        }
        code => return Err(RefusalReason::EntryFailed(status::describe(code))),
    }
    if record.is_null() {
        return Err(RefusalReason::EntryFailed("returned no plugin record"));
    }

    // Read only the header first: a record from another ABI version may be shorter.
    // SAFETY: every record version starts with `RecordHeader`; the pointer is non-null
    // and points into the leaked library.
    let header = unsafe { record.cast::<RecordHeader>().read_unaligned() };
    if header.abi_version != ABI_VERSION {
        return Err(RefusalReason::AbiVersion {
            plugin: header.abi_version,
            host: ABI_VERSION,
        });
    }
    let expected = size_of::<PluginRecord>();
    if (header.size as usize) < expected {
        return Err(RefusalReason::RecordSize {
            size: header.size,
            abi: header.abi_version,
            expected,
        });
    }
    // SAFETY: version and size match a complete v1 record, which lives in the leaked
    // library's static data.
    let record: &'static PluginRecord = unsafe { &*record };
    if record.signature != BUILD_SIGNATURE {
        return Err(RefusalReason::Signature {
            plugin: signature_text(&record.signature),
            host: signature_text(&BUILD_SIGNATURE),
        });
    }
    Ok(Exports {
        abi_version: record.abi_version,
        descriptor_json: record.descriptor_json,
        hook: record.hook,
    })
}

impl Exports {
    /// Whether the plugin exports a hook entry at all.
    pub fn has_hooks(&self) -> bool {
        self.hook.is_some()
    }

    /// The descriptor JSON, or the status code the plugin answered.
    pub fn descriptor_json(&self) -> Result<Vec<u8>, i32> {
        let describe = self.descriptor_json;
        // SAFETY: `call_buffered` passes a buffer valid for `cap` bytes and a length slot.
        call_buffered(|out, cap, out_len| unsafe { describe(out, cap, out_len) })
    }

    /// Runs hook `name` on JSON `input`; `Err` carries the plugin's status code.
    pub fn call_hook(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, i32> {
        let hook = self.hook.ok_or(status::UNKNOWN_HOOK)?;
        // SAFETY: name and input are live slices of the given lengths; `call_buffered`
        // passes a buffer valid for `cap` bytes and a length slot.
        call_buffered(|out, cap, out_len| unsafe {
            hook(
                name.as_ptr(),
                name.len(),
                input.as_ptr(),
                input.len(),
                out,
                cap,
                out_len,
            )
        })
    }
}

/// The buffer protocol of the ABI: try a 16 KiB buffer, and once more with the size the
/// plugin asks for (bounded by `MAX_ANSWER`).
fn call_buffered(call: impl Fn(*mut u8, usize, *mut usize) -> i32) -> Result<Vec<u8>, i32> {
    let mut cap = 16 * 1024;
    for _ in 0..2 {
        let mut buf = vec![0u8; cap];
        let mut len = 0usize;
        match call(buf.as_mut_ptr(), cap, &mut len) {
            status::OK if len <= cap => {
                buf.truncate(len);
                return Ok(buf);
            }
            status::OK => return Err(status::INTERNAL),
            status::BUFFER_TOO_SMALL if len > cap && len <= MAX_ANSWER => cap = len,
            status::BUFFER_TOO_SMALL => return Err(status::BUFFER_TOO_SMALL),
            code => return Err(code),
        }
    }
    Err(status::BUFFER_TOO_SMALL)
}
