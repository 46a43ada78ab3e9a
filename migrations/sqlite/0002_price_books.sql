-- Imported price books: the newest row is the book in force; with none,
-- tally uses the book it ships with (fixtures/prices.toml).
create table price_books (
    id           integer primary key,
    imported_at  integer not null,
    name         text    not null,
    toml         text    not null
) strict;
