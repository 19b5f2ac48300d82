"""Code the tests share (not collected: no ``test_`` modules here)."""
