"""The product's logic. No Flask request objects in here; callers own transactions."""
