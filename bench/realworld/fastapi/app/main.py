"""A small FastAPI service with a typed model."""
from fastapi import FastAPI
from pydantic import BaseModel

from app.version import VERSION

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
def read_item(item_id: int) -> dict:
    item = Item(name=f"item-{item_id}", price=item_id * 1.5)
    return {"id": item_id, "item": item.model_dump(), "version": VERSION}
