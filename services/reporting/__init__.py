"""What marketers read: the lead filter shared by browser and export, the CSV
export, the funnel rollup, article views, and the dashboard built on them.
"""
