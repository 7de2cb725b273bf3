//! The local real mail stack (Dovecot + Postfix on loopback); being built.
