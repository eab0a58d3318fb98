"""The API's routers, one per area; each handler parses, calls one service function, renders."""
