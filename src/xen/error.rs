//! Xen error codes (xen/include/public/errno.h) and grant-table status codes
//! (GNTST_*, xen/include/public/grant_table.h) as typed errors.
#![forbid(unsafe_code)]

use core::fmt;

/// A failed hypercall or Xen operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenError {
    /// EPERM.
    NotPermitted,
    /// ENOENT.
    NoEntry,
    /// ESRCH.
    NoSuchDomain,
    /// EINVAL.
    Invalid,
    /// ENOMEM.
    NoMemory,
    /// EBUSY.
    Busy,
    /// EEXIST.
    Exists,
    /// EAGAIN.
    Again,
    /// ENOSPC.
    NoSpace,
    /// ENOSYS.
    NotImplemented,
    /// EFAULT.
    Fault,
    /// EACCES.
    Access,
    /// Any other errno value.
    Errno(i64),
    /// A grant operation's own status (GNTST_*).
    Grant(GrantStatus),
    /// Not running on Xen.
    NoHypervisor,
}

impl XenError {
    /// Decodes a negative hypercall return value.
    pub fn from_errno(rc: i64) -> Self {
        match -rc {
            1 => Self::NotPermitted,
            2 => Self::NoEntry,
            3 => Self::NoSuchDomain,
            11 => Self::Again,
            12 => Self::NoMemory,
            13 => Self::Access,
            14 => Self::Fault,
            16 => Self::Busy,
            17 => Self::Exists,
            22 => Self::Invalid,
            28 => Self::NoSpace,
            38 => Self::NotImplemented,
            _ => Self::Errno(rc),
        }
    }

    /// Turns a hypercall return value into a result.
    pub fn check(rc: i64) -> Result<u64, XenError> {
        if rc < 0 { Err(Self::from_errno(rc)) } else { Ok(rc as u64) }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Errno(n) => write!(f, "Xen error {n}"),
            Self::Grant(s) => write!(f, "grant status {s:?}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Per-operation status of a grant-table operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    /// GNTST_general_error.
    GeneralError,
    /// GNTST_bad_domain.
    BadDomain,
    /// GNTST_bad_gntref.
    BadGntref,
    /// GNTST_bad_handle.
    BadHandle,
    /// GNTST_bad_virt_addr.
    BadVirtAddr,
    /// GNTST_bad_dev_addr.
    BadDevAddr,
    /// GNTST_no_device_space.
    NoDeviceSpace,
    /// GNTST_permission_denied.
    PermissionDenied,
    /// GNTST_bad_page.
    BadPage,
    /// GNTST_bad_copy_arg.
    BadCopyArg,
    /// GNTST_address_too_big.
    AddressTooBig,
    /// GNTST_eagain.
    Eagain,
    /// GNTST_no_space.
    NoSpace,
    /// Any other negative value.
    Unknown(i16),
}

impl GrantStatus {
    /// Decodes a status field: `Ok(())` for GNTST_okay.
    pub fn check(status: i16) -> Result<(), XenError> {
        let s = match status {
            0 => return Ok(()),
            -1 => Self::GeneralError,
            -2 => Self::BadDomain,
            -3 => Self::BadGntref,
            -4 => Self::BadHandle,
            -5 => Self::BadVirtAddr,
            -6 => Self::BadDevAddr,
            -7 => Self::NoDeviceSpace,
            -8 => Self::PermissionDenied,
            -9 => Self::BadPage,
            -10 => Self::BadCopyArg,
            -11 => Self::AddressTooBig,
            -12 => Self::Eagain,
            -13 => Self::NoSpace,
            n => Self::Unknown(n),
        };
        Err(XenError::Grant(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_and_grant_status_decode() {
        assert_eq!(XenError::check(5), Ok(5));
        assert_eq!(XenError::check(-22), Err(XenError::Invalid));
        assert_eq!(XenError::check(-99), Err(XenError::Errno(-99)));
        assert_eq!(GrantStatus::check(0), Ok(()));
        assert_eq!(GrantStatus::check(-3), Err(XenError::Grant(GrantStatus::BadGntref)));
        assert_eq!(GrantStatus::check(-77), Err(XenError::Grant(GrantStatus::Unknown(-77))));
        assert_eq!(GrantStatus::check(i16::MIN), Err(XenError::Grant(GrantStatus::Unknown(i16::MIN))));
    }
}
