import { Link } from "react-router";

export default function NotFound() {
  return (
    <section className="narrow">
      <h1>Page not found</h1>
      <p>
        Nothing is at this address. <Link to="/">Go to your projects</Link>
      </p>
    </section>
  );
}
