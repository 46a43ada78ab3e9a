-- Imported price books: the newest row is the book in force; with none,
-- tally uses the book it ships with (fixtures/prices.toml).
create table price_books (
    id           bigint generated always as identity primary key,
    imported_at  bigint not null,
    name         text   not null,
    toml         text   not null
);
