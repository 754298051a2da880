"""Users and API tokens: accounts, token checks and roles, the users router."""
