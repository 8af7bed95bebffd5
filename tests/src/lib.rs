//! rbuild-tests: fixtures shared by the integration tests in `tests/tests/`: the path of the built `rbuild` binary,
//! the peer conformance data in `../shared/conformance` (tests skip, saying so, when it is absent), and the offline
//! test images made by `vendor-test-images/`.
