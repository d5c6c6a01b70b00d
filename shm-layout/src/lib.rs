//! Shared-region layout (see SPEC.md).
