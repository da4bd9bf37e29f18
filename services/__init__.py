"""The product's logic, one subpackage per domain. No Flask request objects in
here; callers own transactions.

Beside the subpackages sit the building blocks every domain uses: the clock,
signed tokens, the range of dates, upserts, keyset paging, time zones, and
the articles (content).
"""
